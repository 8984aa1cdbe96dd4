//! A real exim on loopback, for testing our SMTP client against a real
//! server: Debian's exim4-daemon-light, unpacked (not installed) by
//! `scripts/exim-setup.sh` into `/opt/dma-rs-test/exim`.
//!
//! Each [`Exim`] is a daemon of its own, with a private config, spool, log
//! and message store in a fresh temporary directory and its own free
//! loopback ports, so tests may run several at once. It acts as a smarthost
//! that accepts mail for any domain from 127.0.0.1 but relays nothing: every
//! accepted message is stored once, with its envelope, in a file of its own
//! (see [`Exim::messages`]).
//!
//! Behaviour (RCPT ACL): a local part starting with `reject` gets
//! `550 5.1.1 no such user`; one starting with `defer` gets
//! `451 4.3.0 deferred by the test harness` while [`Exim::set_defer`] is on;
//! everything else is accepted. EHLO offers PIPELINING and `AUTH PLAIN LOGIN
//! CRAM-MD5` (over plain text too), and STARTTLS when [`EximOptions::tls`].
//!
//! It runs as root (the daemon then drops to Debian's compiled-in exim user,
//! `Debian-exim`, which the setup script creates).

#![allow(dead_code)] // Each test binary uses a different part of the harness.

#[path = "peer.rs"]
mod peer;

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peer::{free_ports, greets, group_members, write_file};

/// The unpacked exim binary.
pub const EXIM_BIN: &str = "/opt/dma-rs-test/exim/usr/sbin/exim4";
/// The exim user (and group) compiled into Debian's build.
pub const EXIM_USER: &str = "Debian-exim";

/// How long [`Exim::start`] waits for the daemon, and [`Exim::messages`] for
/// its deliveries.
const WAIT: Duration = Duration::from_secs(10);

/// What the daemon offers.
#[derive(Clone, Debug, Default)]
pub struct EximOptions {
    /// AUTH users: (login, password). Neither may contain a newline, a
    /// password may not start with white space, and logins are matched
    /// without regard to case (exim's lsearch).
    pub users: Vec<(String, String)>,
    /// STARTTLS on [`Exim::port`] and implicit TLS on [`Exim::tls_port`],
    /// with a certificate for `localhost` and 127.0.0.1 signed by a fresh CA
    /// ([`Exim::ca_pem`]).
    pub tls: bool,
    /// The AUTH mechanisms to offer (`PLAIN`, `LOGIN`, `CRAM-MD5`); empty
    /// means all three.
    pub mechanisms: Vec<String>,
    /// The certificate and private key (PEM) to present instead of the
    /// harness's CA-signed one ([`Exim::ca_pem`] is then not the CA of
    /// what the server shows).
    pub certificate: Option<(String, String)>,
    /// MAIL without AUTH gets `530 5.7.0 authentication required`.
    pub require_auth: bool,
    /// A GnuTLS priority string (`tls_require_ciphers`), to make the TLS
    /// handshake fail.
    pub tls_priority: Option<String>,
    /// The DNS server exim's resolver asks (port 53), for DKIM
    /// verification: exim runs in a mount namespace of its own where
    /// /etc/resolv.conf names it (exim has no option for a nameserver).
    pub nameserver: Option<std::net::Ipv4Addr>,
}

/// A message that exim accepted and stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The envelope recipients that exim accepted, as given in RCPT TO.
    pub rcpts: Vec<String>,
    /// The envelope sender as given in MAIL FROM (empty for `<>`).
    pub sender: String,
    /// The message as exim stored it: exim's `Received:` header first, then
    /// the message as sent, with LF line ends and the dot-stuffing undone.
    pub data: String,
}

/// A running exim daemon. Dropping it kills the daemon (and whatever it
/// started) and removes its directory.
pub struct Exim {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
    ca_pem: Option<String>,
}

/// Whether the exim tests can run here; if not, says so on stderr
/// (`SKIPPED test: ...`) or, when DMA_TESTS_REQUIRE_ROOT is set, panics.
pub fn need_exim(test: &str) -> bool {
    peer::need_peer(
        test,
        Exim::available(),
        &format!(
            "{EXIM_BIN} or the user {EXIM_USER} is missing: run scripts/exim-setup.sh as root"
        ),
    )
}

impl Exim {
    /// Whether the unpacked exim and its user exist and we are root.
    pub fn available() -> bool {
        Path::new(EXIM_BIN).is_file()
            && nix::unistd::geteuid().is_root()
            && matches!(nix::unistd::User::from_name(EXIM_USER), Ok(Some(_)))
    }

    /// Starts exim on free loopback ports with a private config in a fresh
    /// temporary directory; returns once it accepts connections. Panics with
    /// exim's log and stderr if it does not come up.
    pub fn start(opts: EximOptions) -> Exim {
        // A port taken before exim binds it: exim stops at once
        // (daemon_startup_retries = 0), and we try again with new ports.
        peer::start_on_free_ports("exim", || Exim::try_start(&opts))
    }

    fn try_start(opts: &EximOptions) -> Result<Exim, String> {
        let user = nix::unistd::User::from_name(EXIM_USER)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no user {EXIM_USER}: run scripts/exim-setup.sh as root"));
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        // In /tmp, not $TMPDIR: the exim user must be able to reach it.
        let dir = tempfile::Builder::new()
            .prefix("dma-exim-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().to_path_buf();
        // The daemon and its children run as the exim user: they must reach
        // their directories.
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["spool", "log", "store"] {
            fs::create_dir(d.join(sub)).unwrap();
            std::os::unix::fs::chown(d.join(sub), Some(uid), Some(gid)).unwrap();
        }

        let mut passwd = String::new();
        for (login, password) in &opts.users {
            assert!(
                !login.contains('\n') && !password.contains('\n'),
                "AUTH login and password may not contain a newline"
            );
            // lsearch: a quoted key, then the data.
            let key = login.replace('\\', "\\\\").replace('"', "\\\"");
            writeln!(passwd, "\"{key}\": {password}").unwrap();
        }
        write_file(&d.join("passwd"), &passwd, 0o640, gid);

        let [port, tls_port] = free_ports();
        // A certificate even without TLS: exim loads one at start-up all the
        // same, and makes a self-signed one (slowly: 0.4 s) if it has none.
        let (ca, cert, key) = certificates();
        let (cert, key) = opts.certificate.clone().unwrap_or((cert, key));
        write_file(&d.join("ca.pem"), &ca, 0o644, gid);
        write_file(&d.join("cert.pem"), &cert, 0o644, gid);
        write_file(&d.join("key.pem"), &key, 0o640, gid);
        let ca_pem = opts.tls.then_some(ca);
        let conf = d.join("exim.conf");
        // -C: the config must be owned by root (Debian's "Configure owner")
        // and writable by nobody else.
        write_file(
            &conf,
            &config(&d, port, opts.tls.then_some(tls_port), opts),
            0o644,
            0,
        );

        let stderr = fs::File::create(d.join("stderr")).unwrap();
        let mut cmd = match opts.nameserver {
            None => Command::new(EXIM_BIN),
            Some(ns) => {
                let resolv = d.join("resolv.conf");
                write_file(
                    &resolv,
                    &format!("nameserver {ns}\noptions timeout:2 attempts:1\n"),
                    0o644,
                    0,
                );
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg("mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"")
                    .arg(&resolv)
                    .arg(EXIM_BIN);
                c
            }
        };
        let child = cmd
            .arg("-C")
            .arg(&conf)
            .arg("-bdf")
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {EXIM_BIN}: {e}"));
        let mut exim = Exim {
            dir,
            child: Some(child),
            port,
            tls_port: opts.tls.then_some(tls_port),
            ca_pem,
        };
        exim.wait_ready()?;
        Ok(exim)
    }

    /// Waits until the daemon has said it started and accepts a connection.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exim exited with {status}\n{}", self.log()));
            }
            let started = fs::read_to_string(self.dir.path().join("log/mainlog"))
                .is_ok_and(|l| l.contains(" daemon started: "));
            if started && greets(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("exim did not come up in {WAIT:?}\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The plain SMTP port on 127.0.0.1 (it offers STARTTLS when the
    /// options asked for TLS).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS port on 127.0.0.1 (`tls_on_connect_ports`). Panics
    /// unless started with TLS.
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("exim was started without TLS")
    }

    /// The PEM of the CA that signed exim's certificate. Panics unless
    /// started with TLS.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone().expect("exim was started without TLS")
    }

    /// The same CA, in a file. Panics unless started with TLS.
    pub fn ca_path(&self) -> PathBuf {
        assert!(self.ca_pem.is_some(), "exim was started without TLS");
        self.dir.path().join("ca.pem")
    }

    /// Exim's private directory (config, spool, log, store).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// While on, RCPT of a local part starting with `defer` gets
    /// `451 4.3.0`.
    pub fn set_defer(&self, on: bool) {
        let flag = self.dir.path().join("defer");
        if on {
            fs::write(&flag, "").unwrap();
        } else {
            match fs::remove_file(&flag) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{e}"),
                _ => {}
            }
        }
    }

    /// Every message exim accepted and stored, in order of arrival. Waits
    /// (up to 10 s, then panics with the log) until exim has delivered all
    /// it accepted, so call it after the client has seen the reply to the
    /// end of DATA.
    pub fn messages(&self) -> Vec<StoredMessage> {
        let deadline = Instant::now() + WAIT;
        while self.queued() > 0 {
            assert!(
                Instant::now() < deadline,
                "exim still has {} message(s) in its queue after {WAIT:?}\n{}",
                self.queued(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut found = Vec::new();
        for entry in fs::read_dir(self.dir.path().join("store")).unwrap() {
            let path = entry.unwrap().path();
            let raw = fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&raw);
            let (arrival, msg) = parse_stored(&text)
                .unwrap_or_else(|| panic!("{}: not a stored message:\n{text}", path.display()));
            found.push((arrival, path.file_name().unwrap().to_owned(), msg));
        }
        found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        found.into_iter().map(|(_, _, m)| m).collect()
    }

    /// The number of messages in exim's queue (accepted, not yet delivered).
    fn queued(&self) -> usize {
        match fs::read_dir(self.dir.path().join("spool/input")) {
            Ok(entries) => entries
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with("-H"))
                })
                .count(),
            Err(_) => 0,
        }
    }

    /// Exim's main, reject and panic logs and its stderr, for failure
    /// messages.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for (name, path) in [
            ("mainlog", "log/mainlog"),
            ("rejectlog", "log/rejectlog"),
            ("paniclog", "log/paniclog"),
            ("stderr", "stderr"),
        ] {
            if let Ok(text) = fs::read_to_string(self.dir.path().join(path))
                && !text.is_empty()
            {
                let _ = write!(out, "--- exim {name}:\n{text}");
            }
        }
        out
    }
}

impl Drop for Exim {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill, killpg};
        use nix::unistd::Pid;
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The daemon leads its own process group, with the processes it
        // forked for connections and deliveries. A process killed with its
        // parent goes to init, which may be slow to reap it (here, a zombie
        // for a minute): so let them end first (they do at once, unless a
        // client still holds a connection), then kill what is left from the
        // leaves up, then the daemon.
        let daemon = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let others = group_members(daemon);
            if others.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let parents: Vec<i32> = others.iter().map(|&(_, ppid)| ppid).collect();
                for &(pid, _) in others.iter().filter(|(pid, _)| !parents.contains(pid)) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            if Instant::now() > deadline + Duration::from_secs(1) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = killpg(Pid::from_raw(daemon), Signal::SIGKILL);
        let _ = child.wait();
    }
}

/// A fresh CA, and a certificate for `localhost` and 127.0.0.1 that it
/// signed: (CA PEM, certificate PEM, private key PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dma-rs test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let issuer: &Issuer<'_, KeyPair> = &ca;
    let cert = params.signed_by(&key, issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// The envelope lines that the store transport writes before each message.
const ARRIVAL: &str = "X-Harness-Arrival: ";
const SENDER: &str = "X-Harness-Envelope-From: ";
const RCPTS: &str = "X-Harness-Envelope-To: ";

/// Splits a stored file into its arrival time (µs) and the message.
fn parse_stored(text: &str) -> Option<(u64, StoredMessage)> {
    let mut lines = text.splitn(4, '\n');
    let arrival = lines.next()?.strip_prefix(ARRIVAL)?.parse().ok()?;
    let sender = lines.next()?.strip_prefix(SENDER)?;
    let sender = sender.strip_prefix('<')?.strip_suffix('>')?.to_string();
    let rcpts = lines.next()?.strip_prefix(RCPTS)?;
    let rcpts = rcpts
        .split(", ")
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    let data = lines.next().unwrap_or("").to_string();
    Some((
        arrival,
        StoredMessage {
            rcpts,
            sender,
            data,
        },
    ))
}

/// The exim configuration for a daemon in `d`.
fn config(d: &Path, port: u16, tls_port: Option<u16>, opts: &EximOptions) -> String {
    let mechanisms = &opts.mechanisms;
    let d = d.display();
    let offer = |m: &str| {
        if mechanisms.is_empty() || mechanisms.iter().any(|x| x.eq_ignore_ascii_case(m)) {
            ""
        } else {
            "  server_advertise_condition = false\n"
        }
    };
    let (plain, login, cram) = (offer("PLAIN"), offer("LOGIN"), offer("CRAM-MD5"));
    let ports = match tls_port {
        Some(t) => format!("{port} : {t}"),
        None => port.to_string(),
    };
    let mut tls = match tls_port {
        Some(t) => format!("tls_advertise_hosts = *\ntls_on_connect_ports = {t}\n"),
        None => "tls_advertise_hosts =\n".to_string(),
    };
    if let Some(p) = &opts.tls_priority {
        tls.push_str(&format!("tls_require_ciphers = {p}\n"));
    }
    // Without AUTH, MAIL is refused as a smarthost that wants a password
    // refuses it.
    let mail_acl = if opts.require_auth {
        "  deny    !authenticated = *\n          message = 530 5.7.0 authentication required\n"
    } else {
        ""
    };
    format!(
        r#"# exim for one dma-rs test (tests/support/exim.rs).

# The unpacked binary: exim re-executes itself for deliveries.
exim_path = {EXIM_BIN}
exim_user = {EXIM_USER}
exim_group = {EXIM_USER}
# Deliveries run as the exim user, never as root.
deliver_drop_privilege = true
keep_environment =

spool_directory = {d}/spool
log_file_path = {d}/log/%slog
pid_file_path = {d}/exim.pid
log_selector = +smtp_protocol_error +smtp_syntax_error +smtp_no_mail \
  +received_recipients +tls_peerdn +dkim_verbose

local_interfaces = 127.0.0.1
daemon_smtp_ports = {ports}
# A port taken under us: fail at once, the harness picks others.
daemon_startup_retries = 0

# No DNS, no ident: nothing but loopback traffic.
primary_hostname = exim.test
qualify_domain = exim.test
host_lookup =
rfc1413_hosts =

pipelining_advertise_hosts = *
auth_advertise_hosts = *
{tls}tls_certificate = {d}/cert.pem
tls_privatekey = {d}/key.pem
# No client certificates asked for, nor the system CAs loaded.
tls_verify_certificates =

# No limits that a test could hit, and every message delivered at once.
smtp_accept_max_nonmail_hosts =
smtp_accept_queue_per_connection = 0
smtp_accept_max = 0
queue_only = false

acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data
acl_smtp_mail = acl_mail
acl_smtp_auth = acl_auth

begin acl

# Every AUTH command is logged: a test can prove that none was sent.
acl_auth:
  warn    logwrite = harness: AUTH command received
  accept

acl_mail:
{mail_acl}  accept

acl_rcpt:
  deny    local_parts = ^reject
          message = 550 5.1.1 no such user
  defer   local_parts = ^defer
          condition = ${{if exists{{{d}/defer}}}}
          message = 451 4.3.0 deferred by the test harness
  accept

# The envelope, saved with the message for the store transport.
acl_data:
  warn    set acl_m_arrival = $tod_epoch_l
          set acl_m_rcpts = $recipients
  accept

begin routers

# Every recipient of a message becomes the same address: exim delivers a
# duplicate once, so each message is stored once, with all its recipients.
# Messages that exim makes itself (bounces) have no saved envelope and are
# discarded.
collapse:
  driver = redirect
  domains = ! harness.invalid
  condition = ${{if def:acl_m_rcpts}}
  data = store@harness.invalid
  redirect_router = store

store:
  driver = accept
  domains = harness.invalid
  transport = store

discard:
  driver = redirect
  data = :blackhole:

begin transports

store:
  driver = appendfile
  file = {d}/store/$message_exim_id
  user = {EXIM_USER}
  group = {EXIM_USER}
  mode = 0644
  use_lockfile = false
  check_string =
  escape_string =
  message_prefix = "{ARRIVAL}$acl_m_arrival\n{SENDER}<$sender_address>\n{RCPTS}$acl_m_rcpts\n"
  message_suffix =

begin authenticators

PLAIN:
  driver = plaintext
  public_name = PLAIN
{plain}  server_prompts = :
  server_condition = ${{if eq{{$auth3}}{{${{lookup{{$auth2}}lsearch{{{d}/passwd}}{{$value}}fail}}}}}}
  server_set_id = $auth2

LOGIN:
  driver = plaintext
  public_name = LOGIN
{login}  server_prompts = Username:: : Password::
  server_condition = ${{if eq{{$auth2}}{{${{lookup{{$auth1}}lsearch{{{d}/passwd}}{{$value}}fail}}}}}}
  server_set_id = $auth1

CRAM_MD5:
  driver = cram_md5
  public_name = CRAM-MD5
{cram}  server_secret = ${{lookup{{$auth1}}lsearch{{{d}/passwd}}{{$value}}fail}}
  server_set_id = $auth1
"#
    )
}
