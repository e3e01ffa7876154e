//! TLS and mutual TLS (`--tls-cert`, `--tls-key`, `--tls-client-ca`) with
//! certificates the test makes: a CA, the server's certificate, clients'
//! certificates from that CA and from another.

use std::{path::PathBuf, time::Duration};

use crm_classify::pb::{ListCustomersRequest, customer_service_client::CustomerServiceClient};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::{
    Request, Status,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use crate::helpers::{Backend, TestApp};

/// How long a refused connection may take to fail (it fails at once; the
/// bound only keeps a hang from passing as a refusal).
const REFUSAL_BOUND: Duration = Duration::from_secs(30);

crate::on_both_backends!(
    tls_serves_clients_that_trust_its_ca_and_not_plaintext,
    mutual_tls_admits_only_clients_certified_by_its_ca,
);

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A certificate (PEM) and its key (PEM) issued by `ca`.
fn issue(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("sign");
    (cert.pem(), key.serialize_pem())
}

/// The files of a server's TLS setup.
struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn server_files(ca: &CertifiedIssuer<'static, KeyPair>) -> Files {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = issue(
        ca,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let paths = Files {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key"),
        ca: dir.path().join("ca.pem"),
        _dir: dir,
    };
    std::fs::write(&paths.cert, cert).expect("write");
    std::fs::write(&paths.key, key).expect("write");
    std::fs::write(&paths.ca, ca.pem()).expect("write");
    paths
}

/// Lists the test tenant's customers over a new connection made with
/// `tls` (plaintext when `None`).
async fn list_over(app: &TestApp, tls: Option<ClientTlsConfig>) -> Result<i64, Status> {
    let call = async {
        let endpoint = match tls {
            Some(tls) => Channel::from_shared(format!("https://{}", app.addr))
                .expect("uri")
                .tls_config(tls)
                .expect("tls config"),
            None => Channel::from_shared(format!("http://{}", app.addr)).expect("uri"),
        };
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
        let tenant = MetadataValue::try_from(app.tenant.as_str()).expect("tenant");
        let mut request = Request::new(ListCustomersRequest::default());
        request.metadata_mut().insert("x-tenant-id", tenant);
        let reply = CustomerServiceClient::new(channel)
            .list_customers(request)
            .await?;
        Ok(reply.into_inner().total_size)
    };
    tokio::time::timeout(REFUSAL_BOUND, call)
        .await
        .expect("the call ends, admitted or refused")
}

fn trusting(ca: &CertifiedIssuer<'static, KeyPair>) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost")
}

async fn tls_serves_clients_that_trust_its_ca_and_not_plaintext(backend: Backend) {
    let ca = authority("crm test CA");
    let files = server_files(&ca);
    let app = TestApp::spawn_with_config(backend, |config| {
        config.tls_cert = Some(files.cert.clone());
        config.tls_key = Some(files.key.clone());
    })
    .await
    .expect("server");
    assert_eq!(
        list_over(&app, Some(trusting(&ca)))
            .await
            .expect("over TLS"),
        0
    );
    assert!(list_over(&app, None).await.is_err(), "plaintext is refused");
    let stranger = authority("another CA");
    assert!(
        list_over(&app, Some(trusting(&stranger))).await.is_err(),
        "a client that does not trust the server's CA does not connect"
    );
}

async fn mutual_tls_admits_only_clients_certified_by_its_ca(backend: Backend) {
    let ca = authority("crm test CA");
    let files = server_files(&ca);
    let app = TestApp::spawn_with_config(backend, |config| {
        config.tls_cert = Some(files.cert.clone());
        config.tls_key = Some(files.key.clone());
        config.tls_client_ca = Some(files.ca.clone());
    })
    .await
    .expect("server");
    let (cert, key) = issue(&ca, &["sales-service"], ExtendedKeyUsagePurpose::ClientAuth);
    let certified = trusting(&ca).identity(Identity::from_pem(cert, key));
    assert_eq!(
        list_over(&app, Some(certified))
            .await
            .expect("with a certificate"),
        0
    );

    let refused = list_over(&app, Some(trusting(&ca))).await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let stranger = authority("another CA");
    let (cert, key) = issue(
        &stranger,
        &["intruder"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let refused = list_over(
        &app,
        Some(trusting(&ca).identity(Identity::from_pem(cert, key))),
    )
    .await;
    assert!(
        refused.is_err(),
        "a certificate from another CA: {refused:?}"
    );
}
