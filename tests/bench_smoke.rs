//! Runs `bench/run.sh --smoke` (dma-rs and Debian's dma side by side, tiny
//! sizes, both installed set-id in the runs' namespaces, submissions as the
//! ordinary user benchsend) and checks that every workload ran for both
//! MTAs. Needs root, the unpacked packages under /opt/dma-rs-bench and the
//! bench users (`bench/setup.sh`); without them it prints a SKIPPED line,
//! unless DMA_TESTS_REQUIRE_ROOT is set, in which case it runs
//! `bench/setup.sh` first (and fails if that fails). dma-rs is this test
//! build's `dma` with the `dma-local` beside it. Writes only to a temporary
//! directory, never BENCHMARKS.md.

use std::path::Path;
use std::process::Command;

const WORKLOADS: &[&str] = &[
    "relay_immediate",
    "relay_immediate_1",
    "relay_queued",
    "relay_immediate_20ms",
    "relay_queued_20ms",
    "relay_immediate_rtt20",
    "relay_queued_rtt20",
    "relay_immediate_limit10",
    "relay_queued_limit10",
    "local_one",
    "local_50",
    "local_queued",
    "local_queued_50",
    "latency",
    "memory",
    "queue_scale",
];

fn skip(why: &str) {
    eprintln!("SKIPPED bench_smoke: {why}");
}

#[test]
fn bench_smoke() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let require = std::env::var_os("DMA_TESTS_REQUIRE_ROOT").is_some();
    if !nix::unistd::geteuid().is_root() {
        if require {
            panic!("bench_smoke needs root, and DMA_TESTS_REQUIRE_ROOT is set");
        }
        return skip("needs root");
    }
    for tool in ["unshare", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            if require {
                panic!("bench_smoke needs {tool}");
            }
            return skip(&format!("{tool} not found"));
        }
    }
    let dma = Path::new("/opt/dma-rs-bench/dma/usr/sbin/dma");
    let submitter = nix::unistd::User::from_name("benchsend")
        .ok()
        .flatten()
        .is_some();
    if !dma.exists() || !submitter {
        if !require {
            return skip(
                "/opt/dma-rs-bench or user benchsend missing (run bench/setup.sh as root)",
            );
        }
        let st = Command::new(repo.join("bench/setup.sh"))
            .env("BENCH_SKIP_BUILD", "1") // this test uses cargo's own build of dma
            .status()
            .expect("run bench/setup.sh");
        assert!(st.success(), "bench/setup.sh failed: {st}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results.jsonl");
    let report = tmp.path().join("BENCHMARKS.md");
    let bm = repo.join("BENCHMARKS.md");
    let before = std::fs::metadata(&bm).and_then(|m| m.modified()).ok();
    let start = std::time::Instant::now();
    let o = Command::new(repo.join("bench/run.sh"))
        .arg("--smoke")
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .env("DMARS", env!("CARGO_BIN_EXE_dma"))
        .output()
        .expect("run bench/run.sh");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "bench/run.sh --smoke failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        o.status
    );
    eprintln!("bench smoke took {:?}", start.elapsed());
    let results = std::fs::read_to_string(&out).expect("results file");
    // msmtp (installed by bench/setup.sh) where it applies: relay without
    // a queue.
    let msmtp = Command::new("sh")
        .args(["-c", "command -v msmtp"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    for w in WORKLOADS {
        let with_msmtp = msmtp && w.starts_with("relay_immediate");
        for mta in ["dma-rs", "dma", "msmtp"] {
            if mta == "msmtp" && !with_msmtp {
                continue;
            }
            let rec: Vec<&str> = results
                .lines()
                .filter(|l| {
                    l.contains(&format!("\"workload\": \"{w}\""))
                        && l.contains(&format!("\"mta\": \"{mta}\""))
                })
                .collect();
            assert!(
                !rec.is_empty(),
                "no result for {w} / {mta}:\n{results}\n{stdout}"
            );
            for l in rec {
                assert!(!l.contains("\"error\""), "{w} / {mta} failed: {l}");
                assert!(
                    l.contains("\"complete\": true"),
                    "{w} / {mta} incomplete: {l}"
                );
            }
        }
    }
    let md = std::fs::read_to_string(&report).expect("smoke report");
    assert!(
        md.contains("SMOKE RUN")
            && md.contains("## Targets (issue 11")
            && md.contains("## Targets (issue 5)"),
        "{md}"
    );
    // the floor, measured once per run
    assert!(
        results.lines().any(|l| l.contains("\"kind\": \"floor\"")),
        "no floor line:\n{results}"
    );
    // installed mode, submissions as the ordinary user, per-run figures
    assert!(
        results.contains("\"mode\": \"installed\"")
            && results.contains("\"submitter\": \"benchsend\""),
        "{results}"
    );
    for l in results
        .lines()
        .filter(|l| l.contains("\"mta\": \"dma-rs\""))
    {
        assert!(
            l.contains("\"sub_p50_ms\"") && l.contains("\"cpu_s\""),
            "no submission or CPU figures: {l}"
        );
    }
    if msmtp {
        assert!(md.contains("| msmtp s | msmtp rcpts/s |"), "{md}");
    }
    let after = std::fs::metadata(&bm).and_then(|m| m.modified()).ok();
    assert_eq!(before, after, "the smoke run must not write BENCHMARKS.md");
}
