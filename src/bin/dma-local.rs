//! `dma-local`: the privileged step of local delivery (see `local::helper`).

fn main() {
    dma_rs::set_progname("dma-local");
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::exit(dma_rs::local::helper::main(args));
}
