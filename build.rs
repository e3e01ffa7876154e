//! Compiles `proto/crm/v1/*.proto` with protox (pure Rust, no system `protoc`)
//! into prost messages and tonic services, and writes the descriptor set that
//! server reflection serves.

use std::{env, fs, io, path::PathBuf};

use prost::Message;

fn main() -> io::Result<()> {
    let proto_dir = PathBuf::from("proto");
    let mut files: Vec<PathBuf> = fs::read_dir(proto_dir.join("crm/v1"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|ext| ext == "proto"));
    files.sort();

    let descriptors = protox::compile(&files, [&proto_dir])
        .map_err(|e| io::Error::other(format!("proto compilation failed: {e:?}")))?;
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(
        out_dir.join("crm_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    // Type names (`prost::Name`), so a request's descriptor can be found
    // from its Rust type and its strings walked generically.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        // Deterministic encoding of map fields, so a request's bytes can serve
        // as its idempotency fingerprint.
        .btree_map(".")
        // google.rpc.Status (import results) is tonic-types' type, the one
        // rich errors are built with.
        .extern_path(".google.rpc", "::tonic_types::pb")
        .compile_fds_with_config(descriptors, config)?;

    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
