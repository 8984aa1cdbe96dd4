//! What the harnesses of the real peer MTAs (`exim.rs`, `postfix.rs`) share:
//! the gate that skips (or, with DMA_TESTS_REQUIRE_ROOT, fails) their tests
//! where the peer cannot run, free loopback ports, waiting for a greeting,
//! files owned by root and the peer's group, and the processes of a daemon's
//! process group.
//!
//! Included by each harness with `#[path = "peer.rs"] mod peer;`.

#![allow(dead_code)] // Each harness uses a different part.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// Whether a peer's tests can run here (`available`); if not, says so on
/// stderr (`SKIPPED test: why`) or, when DMA_TESTS_REQUIRE_ROOT is set,
/// panics. `missing` says what to run when root lacks the peer.
pub fn need_peer(test: &str, available: bool, missing: &str) -> bool {
    if available {
        return true;
    }
    let why = if !nix::unistd::geteuid().is_root() {
        "needs root"
    } else {
        missing
    };
    if std::env::var_os("DMA_TESTS_REQUIRE_ROOT").is_some() {
        panic!("{test}: {why}, and DMA_TESTS_REQUIRE_ROOT is set");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// `N` distinct ports that are free on 127.0.0.1 right now.
pub fn free_ports<const N: usize>() -> [u16; N] {
    // All bound at once, so that they differ.
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// Runs `start` (which picks free ports and starts a daemon on them) until
/// it succeeds, again when another process took a port between the pick and
/// the daemon's bind (the error says "Address already in use"), up to 5
/// times; panics with the last error otherwise.
pub fn start_on_free_ports<T>(peer: &str, mut start: impl FnMut() -> Result<T, String>) -> T {
    let mut tries = 0;
    loop {
        match start() {
            Ok(daemon) => return daemon,
            Err(e) if e.contains("Address already in use") && tries < 5 => tries += 1,
            Err(e) => panic!("{peer} did not start:\n{e}"),
        }
    }
}

/// Whether an SMTP server on 127.0.0.1:`port` greets with 220; the
/// connection is then ended with QUIT, so that the server's process for it
/// ends at once.
pub fn greets(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut greeting = Vec::new();
    let mut byte = [0u8; 1];
    while !greeting.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(1) => greeting.push(byte[0]),
            _ => return false,
        }
    }
    if !greeting.starts_with(b"220") {
        return false;
    }
    // No wait for the 221: exim holds it back for 200 ms, waiting for the
    // client to close first.
    let _ = s.write_all(b"QUIT\r\n");
    true
}

/// Writes a file owned by root and `gid`.
pub fn write_file(path: &Path, text: &str, mode: u32, gid: u32) {
    fs::write(path, text).unwrap();
    std::os::unix::fs::chown(path, Some(0), Some(gid)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The live processes (pid, parent pid) in process group `pgid`, but for
/// its leader.
pub fn group_members(pgid: i32) -> Vec<(i32, i32)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == pgid {
            continue;
        }
        // "pid (comm) state ppid pgrp ...": comm may hold anything, so the
        // fields are counted from its closing parenthesis.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            found.push((pid, fields[1].parse().unwrap_or(0)));
        }
    }
    found
}
