//! `dma-local`: the privileged step of local delivery (see `local::helper`).

fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // A runner speaks (`-v`) under the name its submitter was called by.
    if args.first().is_none_or(|a| a != "runner") {
        dma_rs::set_progname("dma-local");
    }
    std::process::exit(dma_rs::local::helper::main(args));
}
