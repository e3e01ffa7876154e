//! `crm-load import-file`: writes the spreadsheet the import benchmark
//! feeds to `crm-classify import`, with the column labels a Getfly user's
//! export has. A share of the rows carry the phone of a customer `seed`
//! made (`+849` and eight digits), so an UPSERT on phone updates them; the
//! others are new customers.

use std::{fs::File, io::BufWriter, path::PathBuf};

use clap::Args;

/// Options of `crm-load import-file`.
#[derive(Debug, Args)]
pub struct ImportFileArgs {
    /// Where to write the CSV.
    #[arg(long)]
    output: PathBuf,
    /// Rows to write.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// How many customers the seeded tenant holds (their phones are
    /// `+849` and 0 … existing − 1 in eight digits).
    #[arg(long, default_value_t = 1_000_000)]
    existing: usize,
    /// Share of the rows that match a seeded customer's phone.
    #[arg(long, default_value_t = 0.5)]
    update_share: f64,
    /// Number of the first new customer (`+848` and eight digits), so
    /// files of several runs create different customers.
    #[arg(long, default_value_t = 0)]
    first_new: usize,
    /// Seed of the random choices.
    #[arg(long, default_value_t = 16)]
    seed: u64,
}

const PROVINCES: [&str; 6] = [
    "Hà Nội",
    "Đà Nẵng",
    "Huế",
    "Hải Phòng",
    "Cần Thơ",
    "TP. Hồ Chí Minh",
];
const RELATIONSHIPS: [&str; 6] = ["NEW", "APPROACHED", "HOT", "POTENTIAL", "LOST", "CLOSED"];

/// Writes the file.
pub fn run(args: ImportFileArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let mut out = csv::Writer::from_writer(BufWriter::new(File::create(&args.output)?));
    out.write_record([
        "Tên khách hàng",
        "Số điện thoại",
        "Email",
        "Tỉnh/Thành phố",
        "Mối quan hệ",
        "Doanh thu",
    ])?;
    let updates = (args.rows as f64 * args.update_share) as usize;
    // Matched customers spread over the whole tenant, none twice.
    let stride = (args.existing / updates.max(1)).max(1);
    for i in 0..args.rows {
        let (name, phone, email) = if i < updates {
            let k = (i * stride) % args.existing.max(1);
            (
                format!("Khách hàng {k:07} (cập nhật)"),
                format!("+849{k:08}"),
                String::new(),
            )
        } else {
            let n = args.first_new + i;
            (
                format!("Khách nhập {n:07}"),
                format!("+848{n:08}"),
                format!("nhap{n:07}@example.vn"),
            )
        };
        out.write_record([
            name.as_str(),
            phone.as_str(),
            email.as_str(),
            PROVINCES[rng.usize(..PROVINCES.len())],
            RELATIONSHIPS[rng.usize(..RELATIONSHIPS.len())],
            &rng.u64(0..50_000_000).to_string(),
        ])?;
    }
    out.flush()?;
    eprintln!(
        "wrote {} rows ({updates} matching seeded phones) to {}",
        args.rows,
        args.output.display()
    );
    Ok(())
}
