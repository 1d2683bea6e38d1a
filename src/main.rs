use sse_bridge::cli::{Command, ConfigError, LogFormat};
use sse_bridge::telemetry::{self, Otlp};

/// jemalloc rather than glibc's `malloc`: a burst of stream opens frees
/// most of what it allocated, and glibc keeps those pages wherever one
/// long-lived allocation sits among them, while jemalloc packs objects of
/// one size together and gives back what a burst left (change 50 in
/// docs/benchmarks.md: ~0.4 KB less memory per idle stream, and faster
/// many-channel fan-out).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start (`_RJEM_MALLOC_CONF` in the
/// environment overrides them). Its default keeps freed pages for 10 s and
/// returns them only when the process allocates again; an idle node after
/// a burst of opens may not. A background thread returns them after 1 s.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 =
    &b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match sse_bridge::cli::parse(std::env::args_os().collect()) {
        Ok(loaded) => loaded.cli,
        // Clap prints usage and help, and exits with its own codes.
        Err(ConfigError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if !matches!(cli.command, Command::Serve(_)) {
        restore_sigpipe();
    }
    let (format, otlp) = match &cli.command {
        Command::Serve(args) => {
            let otlp = args
                .otlp_endpoint
                .as_deref()
                .map(|e| Otlp::parse(e, args.otlp_sample_ratio))
                .transpose();
            match otlp {
                Ok(otlp) => (args.log_format, otlp),
                Err(e) => {
                    eprintln!("error: {e}");
                    return std::process::ExitCode::from(2);
                }
            }
        }
        _ => (LogFormat::Plain, None),
    };
    let telemetry = match telemetry::init(format == LogFormat::Json, otlp.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let outcome = sse_bridge::cli::run(cli).await;
    // Spans still buffered go out before the process does.
    telemetry.shutdown().await;
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `sse-bridge schema | head` should end quietly when `head` does, as Unix
/// tools do, rather than panic on the closed pipe. Rust ignores SIGPIPE at
/// start; the printing commands take the default back. (`serve` keeps it
/// ignored: a peer that closes its socket must not kill the node.)
fn restore_sigpipe() {
    // SAFETY: `signal` only sets the process's disposition for SIGPIPE to
    // the default; no handler of ours runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
