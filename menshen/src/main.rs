fn main() -> std::process::ExitCode {
    menshen::cli::main()
}
