//! Helpers of tests/tls.rs: a throw-away CA (rcgen) issuing PEM files into a scratch
//! directory, a `rexec serve --listen wss://` server from them, the `rexec` CLI and library
//! clients, waiting on the server's log, and a TCP relay that can cut its connections.

use anyhow::{Context, Result, bail, ensure};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rexec_client::{Client, ClientOptions, Endpoint, ProcessSpec, TlsOptions};
use rexec_testkit::server::{self, ScratchDir, Server, ServerOptions, ServerTls, Target};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::process::Command;

pub const DEADLINE: Duration = Duration::from_secs(20);

/// A CA that issues certificates into a scratch directory.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: PathBuf,
}

/// A certificate and its key, as PEM files.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, certificate.pem())?;
        Ok(Ca {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// A certificate for `names` (DNS names or IPs), valid now unless `expired`.
    pub fn issue(&self, dir: &Path, file: &str, names: &[&str], expired: bool) -> Result<Issued> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        // Most general first, as issuers write it: O=Example, then CN.
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example");
        params.distinguished_name.push(DnType::CommonName, file);
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        let issued = Issued {
            cert: dir.join(format!("{file}.crt")),
            key: dir.join(format!("{file}.key")),
        };
        std::fs::write(&issued.cert, certificate.pem())?;
        std::fs::write(&issued.key, key.serialize_pem())?;
        Ok(issued)
    }
}

/// A scratch directory with one CA and a server certificate for 127.0.0.1 from it.
pub struct Setup {
    dir: ScratchDir,
    pub ca: Ca,
    pub server_cert: Issued,
}

impl Setup {
    pub fn new() -> Result<Setup> {
        let dir = ScratchDir::new("tls")?;
        let ca = Ca::new(dir.path(), "ca")?;
        let server_cert = ca.issue(dir.path(), "server", &["127.0.0.1", "localhost"], false)?;
        Ok(Setup {
            dir,
            ca,
            server_cert,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A copy of the server certificate and key under fixed names, for tests that replace
    /// the files and send SIGHUP.
    pub fn live_files(&self) -> Result<Issued> {
        let files = Issued {
            cert: self.path().join("live.crt"),
            key: self.path().join("live.key"),
        };
        std::fs::copy(&self.server_cert.cert, &files.cert)?;
        std::fs::copy(&self.server_cert.key, &files.key)?;
        Ok(files)
    }

    pub async fn server(&self, cert: &Issued, client_ca: Option<&Path>) -> Result<Server> {
        let options = ServerOptions {
            tls: Some(ServerTls {
                cert: cert.cert.clone(),
                key: cert.key.clone(),
                client_ca: client_ca.map(Path::to_owned),
            }),
            env: vec![("RUST_LOG", "info"), ("NO_COLOR", "1")],
            ..Default::default()
        };
        Server::spawn(Target::Rexec, &options).await
    }
}

pub fn rexec() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rexec"));
    command
        .kill_on_drop(true)
        .env_remove("REXEC_CA_FILE")
        .env_remove("REXEC_SERVER")
        .env_remove("REXEC_TOKEN_FILE");
    command
}

pub async fn output_of(mut command: Command) -> Result<Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::time::timeout(DEADLINE, command.output())
        .await
        .context("rexec did not finish in time")?
        .context("running rexec")
}

/// `rexec run --server URL [args] -- sh -c SCRIPT`.
pub async fn run(url: &str, args: &[&str], script: &str) -> Result<Output> {
    let mut command = rexec();
    command
        .args(["run", "--server", url])
        .args(args)
        .args(["--", "sh", "-c", script]);
    output_of(command).await
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// The command failed as rexec itself fails (255) and said `reason`.
pub fn ensure_refused(output: &Output, reason: &str) -> Result<()> {
    let stderr = text(&output.stderr);
    ensure!(
        output.status.code() == Some(255),
        "expected exit 255, got {:?}; stderr: {stderr}",
        output.status
    );
    ensure!(
        stderr.contains(reason),
        "expected the message to say {reason:?}; stderr: {stderr}"
    );
    Ok(())
}

/// Wait until `count` lines of the server's log contain `text`.
pub async fn wait_for_log(server: &Server, text: &str, count: usize) -> Result<()> {
    let log = server.log();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server::lock(&log).count(text) < count {
        if Instant::now() > deadline {
            bail!(
                "the server did not log {text:?} within 10 s\n{}",
                server::lock(&log).render()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

pub fn sighup(server: &Server) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid()?.to_string()])
        .status()?;
    ensure!(status.success(), "kill -HUP failed");
    Ok(())
}

pub async fn library_client(url: &str, ca: &Path) -> Result<Client> {
    let options = ClientOptions {
        tls: TlsOptions {
            ca_file: Some(ca.to_owned()),
            ..TlsOptions::default()
        },
        ..ClientOptions::default()
    };
    Ok(Client::connect(Endpoint::WebSocket(url.to_owned()), options).await?)
}

pub async fn echo(client: &Client, word: &str) -> Result<()> {
    let spec = ProcessSpec::new(["sh", "-c", &format!("echo {word}")]).env("PATH", "/usr/bin:/bin");
    let done = client.run(spec).await?;
    ensure!(
        done.stdout == format!("{word}\n").as_bytes() && done.exit_code == 0,
        "{word}: stdout {:?}, exit {}",
        text(&done.stdout),
        done.exit_code
    );
    Ok(())
}

/// A TCP relay whose open connections can all be cut at once (the listener stays).
pub struct CutProxy {
    pub addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> Result<CutProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Ok(CutProxy { addr, cut, task })
    }

    pub fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// TLS on `tcp` (to 127.0.0.1) trusting `ca`, and nothing sent on it.
pub async fn raw_tls(
    tcp: TcpStream,
    ca: &Path,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca)?;
    for certificate in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(certificate?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    Ok(connector.connect(name, tcp).await?)
}
