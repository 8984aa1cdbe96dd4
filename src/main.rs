//! The `dma` binary: `sendmail`, `mailq` and `newaliases` by `argv[0]`.

fn main() {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let progname = std::path::Path::new(&argv0)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dma".to_string());
    dma_rs::set_progname(&progname);
    let code = match dma_rs::app::main(&progname, args.collect()) {
        Ok(code) => code,
        Err(e) => {
            dma_rs::logging::syslog_only(dma_rs::logging::Level::Err, &e.msg);
            eprintln!("{progname}: {}", e.msg);
            e.code
        }
    };
    std::process::exit(code);
}
