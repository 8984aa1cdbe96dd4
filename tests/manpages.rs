//! The man pages against the program: every `dma.conf` key the parser knows
//! (`conf::KEYS`) is in `dma.conf(5)`, `examples/dma.conf` and the README's
//! table, with its default; every flag of `cli::FLAGS` and every exit code
//! the program returns is in `dma(8)`; each page renders with no groff
//! warning.

use std::path::{Path, PathBuf};
use std::process::Command;

use dma_rs::cli::FLAGS;
use dma_rs::config::Config;
use dma_rs::config::conf::{KEYS, Key};

/// The pages, and the stubs that lead to `dma(8)`.
const PAGES: &[&str] = &["dma.8", "dma.conf.5", "dma-aliases.5", "dma-forward.5"];
const STUBS: &[&str] = &["sendmail.8", "mailq.1", "newaliases.8"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------
// roff, as far as our pages use it
// ---------------------------------------------------------------------------

/// The arguments of a macro line, double quotes grouping blanks.
fn macro_args(rest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in rest.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Escapes and font changes made plain.
fn plain(s: &str) -> String {
    let mut t = s.to_string();
    for (from, to) in [
        ("\\fB", ""),
        ("\\fI", ""),
        ("\\fR", ""),
        ("\\fP", ""),
        ("\\c", ""),
        ("\\&", ""),
        ("\\-", "-"),
        ("\\(aq", "'"),
        ("\\(dq", "\""),
        ("\\(bu", "*"),
        ("\\(+-", "+-"),
        ("\\~", " "),
        ("\\|", ""),
        ("\\e", "\\"),
    ] {
        t = t.replace(from, to);
    }
    t
}

/// One line of roff as the text it shows (`None` for a request without
/// text, such as `.TP` or `.PP`). The font macros that alternate (`.BI`,
/// `.BR`, ...) join their arguments; `.B` and `.I` put blanks between.
fn text_of(line: &str) -> Option<String> {
    let Some(rest) = line.strip_prefix('.') else {
        return Some(plain(line));
    };
    let (name, args) = rest.split_once(' ').unwrap_or((rest, ""));
    let args = macro_args(args);
    match name {
        "B" | "I" | "SM" => Some(plain(&args.join(" "))),
        "BI" | "BR" | "IB" | "IR" | "RB" | "RI" => Some(plain(&args.concat())),
        _ => None,
    }
}

/// A tagged paragraph (`.TP`): its tag line and its text.
#[derive(Debug)]
struct Tagged {
    section: String,
    tag: String,
    body: String,
}

/// Every `.TP` paragraph of a page, with the `.SH` section it is in.
fn tagged(page: &str) -> Vec<Tagged> {
    let mut out: Vec<Tagged> = Vec::new();
    let mut section = String::new();
    let mut open = false;
    let mut want_tag = false;
    for line in page.lines() {
        if let Some(s) = line.strip_prefix(".SH ") {
            section = s.trim_matches('"').to_string();
            open = false;
            continue;
        }
        if line.starts_with(".SS") || line.starts_with(".PP") || line.starts_with(".IP") {
            open = false;
            continue;
        }
        if line == ".TP" {
            want_tag = true;
            continue;
        }
        let Some(text) = text_of(line) else {
            continue;
        };
        if want_tag {
            out.push(Tagged {
                section: section.clone(),
                tag: text.trim().to_string(),
                body: String::new(),
            });
            want_tag = false;
            open = true;
        } else if open && let Some(t) = out.last_mut() {
            t.body.push_str(&text);
            t.body.push(' ');
        }
    }
    out
}

// ---------------------------------------------------------------------------
// the keys
// ---------------------------------------------------------------------------

/// How `key` is written where its value is shown: `PORT n`, or `DEFER`.
fn synopsis(key: &Key) -> String {
    match key.value {
        Some(v) => format!("{} {v}", key.name),
        None => key.name.to_string(),
    }
}

/// What is wrong with the documentation of the keys in `man` (dma.conf.5),
/// `example` (examples/dma.conf) and `readme`; empty when nothing is.
fn key_problems(man: &str, example: &str, readme: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let paras = tagged(man);
    // The README's configuration table: its rows by key.
    let table: Vec<Vec<String>> = readme
        .split("## Configuration reference")
        .nth(1)
        .unwrap_or("")
        .lines()
        .skip_while(|l| !l.starts_with("| key"))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    for k in KEYS {
        let syn = synopsis(k);
        // dma.conf(5): a paragraph tagged `KEY value`, with its default.
        match paras
            .iter()
            .find(|p| p.section == "KEYS" && p.tag.split(' ').next() == Some(k.name))
        {
            None => bad.push(format!("dma.conf.5: no paragraph for {}", k.name)),
            Some(p) => {
                if p.tag != syn {
                    bad.push(format!("dma.conf.5: `{}' should read `{syn}'", p.tag));
                }
                let want = format!("Default: {}", k.default.unwrap_or(""));
                if !p.body.contains(&want) {
                    bad.push(format!("dma.conf.5: {} does not say `{want}'", k.name));
                }
            }
        }
        // examples/dma.conf: one line `#KEY` or `#KEY value`, the default
        // when there is one, and a value that parses.
        let lines: Vec<&str> = example
            .lines()
            .filter(|l| {
                l.strip_prefix('#')
                    .is_some_and(|r| r == k.name || r.starts_with(&format!("{} ", k.name)))
            })
            .collect();
        match lines[..] {
            [line] => {
                let value = line[1 + k.name.len()..].trim_start();
                if k.value.is_some() == value.is_empty() {
                    bad.push(format!("examples/dma.conf: `{line}' for {syn}"));
                }
                if let Some(d) = k.default
                    && value != d
                {
                    bad.push(format!("examples/dma.conf: `{line}', the default is {d}"));
                }
                let mut text = line[1..].to_string();
                if k.name == "NULLCLIENT" {
                    text.push_str("\nSMARTHOST relay.example");
                }
                if let Err(e) = Config::parse(Path::new("examples/dma.conf"), &text) {
                    bad.push(format!("examples/dma.conf: `{line}': {e}"));
                }
            }
            _ => bad.push(format!(
                "examples/dma.conf: {} lines for {}, not one",
                lines.len(),
                k.name
            )),
        }
        // The README: a row `| `KEY value` | default | ...`.
        match table
            .iter()
            .find(|r| r[0].trim_matches('`').split(' ').next() == Some(k.name))
        {
            None => bad.push(format!("README: no row for {}", k.name)),
            Some(row) => {
                if !row[0].starts_with(&format!("`{syn}`")) {
                    bad.push(format!("README: `{}' should start with `{syn}'", row[0]));
                }
                if let Some(d) = k.default
                    && row.get(1).map(|c| c.trim_matches('`')) != Some(d)
                {
                    bad.push(format!("README: {} should have the default {d}", k.name));
                }
            }
        }
    }
    // And nothing documented that the parser does not know.
    let known = |name: &str| KEYS.iter().any(|k| k.name == name);
    for p in paras.iter().filter(|p| p.section == "KEYS") {
        let name = p.tag.split(' ').next().unwrap_or("");
        if !known(name) {
            bad.push(format!("dma.conf.5: unknown key {name}"));
        }
    }
    for row in &table {
        let name = row[0].trim_matches('`').split(' ').next().unwrap_or("");
        if !known(name) {
            bad.push(format!("README: unknown key {name}"));
        }
    }
    for l in example.lines() {
        let Some(rest) = l.strip_prefix('#') else {
            continue;
        };
        let name = rest.split(' ').next().unwrap_or("");
        let key_like = name.len() > 1 && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
        if key_like && !known(name) {
            bad.push(format!("examples/dma.conf: unknown key {name}"));
        }
    }
    bad
}

#[test]
fn every_key_is_in_the_man_page_the_example_and_the_readme() {
    let bad = key_problems(
        &read("man/dma.conf.5"),
        &read("examples/dma.conf"),
        &read("README.md"),
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn a_missing_or_wrong_key_is_caught() {
    let (man, example, readme) = (
        read("man/dma.conf.5"),
        read("examples/dma.conf"),
        read("README.md"),
    );
    // SPOOL_MIN_FREE's paragraph cut from the page.
    let start = man.find(".BI \"SPOOL_MIN_FREE \" size").unwrap();
    let end = start + man[start..].find(".TP").unwrap();
    let cut = format!("{}{}", &man[..start], &man[end..]);
    assert_eq!(
        key_problems(&cut, &example, &readme),
        ["dma.conf.5: no paragraph for SPOOL_MIN_FREE"]
    );
    // A wrong default in the example, a key missing from the README.
    let example = example.replace("#PORT 25\n", "#PORT 587\n");
    let readme = readme.replace("| `HOP_SESSIONS n`", "| `HOPSESSIONS n`");
    assert_eq!(
        key_problems(&man, &example, &readme),
        [
            "examples/dma.conf: `#PORT 587', the default is 25",
            "README: no row for HOP_SESSIONS",
            "README: unknown key HOPSESSIONS",
        ]
    );
}

// ---------------------------------------------------------------------------
// flags, exit codes, files
// ---------------------------------------------------------------------------

/// Whether `flag` is the tag (or one of the comma-separated tags) of a
/// paragraph in `paras`: exactly, or followed by its value (`-f addr`); an
/// option letter also by one of its forms (`-b` by `-bp`).
fn flag_documented(flag: &str, paras: &[&Tagged]) -> bool {
    paras.iter().any(|p| {
        p.tag.split(", ").any(|t| {
            t == flag
                || t.starts_with(&format!("{flag} "))
                || (flag.len() == 2 && flag != "--" && t.starts_with(flag))
        })
    })
}

#[test]
fn every_flag_is_in_dma_8() {
    let man = read("man/dma.8");
    let all = tagged(&man);
    let options: Vec<&Tagged> = all.iter().filter(|p| p.section == "OPTIONS").collect();
    let missing: Vec<&&str> = FLAGS
        .iter()
        .filter(|f| !flag_documented(f, &options))
        .collect();
    assert!(missing.is_empty(), "not in dma.8's OPTIONS: {missing:?}");
    // The check can fail: a flag nobody documented.
    assert!(!flag_documented("-Y", &options) && !flag_documented("--usage", &options));
    // And every tag there is a flag of the parser.
    for p in &options {
        for t in p.tag.split(", ") {
            let word = t.split(' ').next().unwrap();
            assert!(
                FLAGS.iter().any(|f| word.starts_with(f)),
                "dma.8 documents {t}, which cli::FLAGS does not have"
            );
        }
    }
}

/// The exit codes of `src/exit.rs` that some other file of `src/` uses.
fn codes_in_use() -> Vec<(String, String)> {
    let exit = read("src/exit.rs");
    let mut sources = String::new();
    let mut dirs = vec![repo("src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("src/exit.rs") {
                sources.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    exit.lines()
        .filter_map(|l| l.strip_prefix("pub const EX_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let value = rest.split('=').nth(1)?.trim().trim_end_matches(';');
            Some((format!("EX_{name}"), value.to_string()))
        })
        .filter(|(name, _)| {
            sources.match_indices(name.as_str()).any(|(i, _)| {
                !sources[i + name.len()..]
                    .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .collect()
}

#[test]
fn every_exit_code_in_use_is_in_dma_8() {
    let man = read("man/dma.8");
    let codes = codes_in_use();
    assert!(codes.len() >= 10, "{codes:?}");
    let documented: Vec<String> = tagged(&man)
        .into_iter()
        .filter(|p| p.section == "EXIT STATUS")
        .map(|p| p.tag)
        .collect();
    for (name, value) in &codes {
        assert!(
            documented.contains(value),
            "{name} ({value}) is not in dma.8's EXIT STATUS: {documented:?}"
        );
    }
    for d in &documented {
        assert!(
            codes.iter().any(|(_, v)| v == d),
            "dma.8 documents exit status {d}, which the program does not use"
        );
    }
}

#[test]
fn dma_8_names_every_file_and_the_pages_their_version() {
    let man = read("man/dma.8");
    let files: String = tagged(&man)
        .into_iter()
        .filter(|p| p.section == "FILES")
        .map(|p| p.tag)
        .collect::<Vec<_>>()
        .join("\n");
    let d = Config::default();
    for want in [
        "/etc/dma/dma.conf".to_string(),
        "/etc/dma/auth.conf".to_string(),
        d.aliases.display().to_string(),
        "~/.forward".to_string(),
        d.spooldir.display().to_string(),
        format!("{}/user", d.mailspool.display()),
        "/usr/local/libexec/dma-rs/dma-local".to_string(),
        "/usr/sbin/sendmail".to_string(),
    ] {
        assert!(
            files.contains(&want),
            "{want} not in dma.8's FILES:\n{files}"
        );
    }
    let version = format!("\"dma-rs {}\"", env!("CARGO_PKG_VERSION"));
    for page in PAGES {
        let text = read(&format!("man/{page}"));
        let th = text.lines().find(|l| l.starts_with(".TH ")).unwrap();
        assert!(th.contains(&version), "{page}: {th} (version {version})");
    }
    for stub in STUBS {
        assert_eq!(read(&format!("man/{stub}")), ".so man8/dma.8\n", "{stub}");
    }
}

// ---------------------------------------------------------------------------
// rendering
// ---------------------------------------------------------------------------

/// The pages laid out as under /usr/share/man (`man1/`, `man5/`, `man8/`),
/// so that the stubs' `.so man8/dma.8` is found from its top: the
/// directory and the pages' paths in it, for `test` to run `tool` on.
/// Without `tool` the test is skipped (`None`), unless the test run
/// requires everything (DMA_TESTS_REQUIRE_ROOT, as CI sets).
fn man_tree(tool: &str, test: &str) -> Option<(tempfile::TempDir, Vec<PathBuf>)> {
    if Command::new(tool).arg("--version").output().is_err() {
        if std::env::var_os("DMA_TESTS_REQUIRE_ROOT").is_some() {
            panic!("{test} needs {tool} (scripts/test-setup.sh installs it)");
        }
        eprintln!("SKIPPED {test}: {tool} is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in PAGES.iter().chain(STUBS) {
        let section = name.rsplit('.').next().unwrap();
        let sub = dir.path().join(format!("man{section}"));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::copy(repo(&format!("man/{name}")), sub.join(name)).unwrap();
        files.push(Path::new(&format!("man{section}")).join(name));
    }
    Some((dir, files))
}

#[test]
fn groff_renders_every_page_without_warnings() {
    let Some((dir, files)) = man_tree("groff", "groff_renders_every_page_without_warnings") else {
        return;
    };
    for f in &files {
        for package in ["-man", "-mandoc"] {
            let out = Command::new("groff")
                .args(["-ww", "-z", package])
                .arg(f)
                .current_dir(dir.path())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && err.is_empty(),
                "groff -ww -z {package} {}: {:?}\n{err}",
                f.display(),
                out.status
            );
        }
    }
}

#[test]
fn man_shows_every_page_and_the_stubs_show_dma_8() {
    let Some((dir, files)) = man_tree("man", "man_shows_every_page_and_the_stubs_show_dma_8")
    else {
        return;
    };
    for f in &files {
        let out = Command::new("man")
            .args(["--warnings=w", "-P", "cat", "-l"])
            .arg(f)
            .current_dir(dir.path())
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        // The header names the page shown: dma(8) for the stubs.
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let (title, section) = match name.as_str() {
            "sendmail.8" | "mailq.1" | "newaliases.8" => ("dma", "8"),
            other => other.rsplit_once('.').unwrap(),
        };
        let header = format!("{}({section})", title.to_uppercase());
        assert!(
            out.status.success()
                && err.is_empty()
                && text.trim_start().starts_with(&header)
                && text.contains("\nNAME\n"),
            "man -l {}: {:?}\n{err}\n{text}",
            f.display(),
            out.status
        );
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    }
}
