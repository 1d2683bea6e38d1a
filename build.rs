//! Compiles `proto/` without a system `protoc` (protox), checks the event
//! catalogue's names and rules, embeds the descriptor set, and generates the
//! Rust types and the tonic service.

use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "src/schema/name.rs"]
mod name;

#[allow(dead_code)]
#[path = "src/schema/rules.rs"]
mod rules;

#[allow(dead_code)]
#[path = "src/schema/catalogue.rs"]
mod catalogue;

#[path = "src/schema/diagnostic.rs"]
mod diagnostic;

fn protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn fail(message: &str) -> ! {
    eprintln!("\nerror: {message}\n");
    std::process::exit(1);
}

fn main() {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=src/schema/rules.rs");
    println!("cargo:rerun-if-changed=src/schema/catalogue.rs");
    println!("cargo:rerun-if-changed=src/schema/name.rs");
    println!("cargo:rerun-if-changed=src/schema/diagnostic.rs");

    let root = Path::new("proto");
    let mut files = Vec::new();
    if let Err(e) = protos(root, &mut files) {
        fail(&format!("cannot read proto/: {e}"));
    }
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let relative: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.strip_prefix(root).ok().map(Path::to_path_buf))
        .collect();
    let mut compiler = match protox::Compiler::new([root]) {
        Ok(c) => c,
        Err(e) => fail(&format!("cannot read proto/: {e:?}")),
    };
    compiler.include_imports(true).include_source_info(true);
    if let Err(e) = compiler.open_files(&relative) {
        fail(&format!(
            "proto/ does not compile: {}",
            diagnostic::render(&e, &e.to_string())
        ));
    }
    // The encoded set keeps custom options (prost_types would drop them as
    // unknown fields); it is what the bridge embeds and reflects on.
    let bytes = compiler.encode_file_descriptor_set();
    let fds = compiler.file_descriptor_set();

    let pool = match prost_reflect::DescriptorPool::decode(bytes.as_slice()) {
        Ok(pool) => pool,
        Err(e) => fail(&format!("descriptor set is invalid: {e}")),
    };
    if let Err(errors) = catalogue::Catalogue::load(&pool) {
        let list: Vec<String> = catalogue::placed(&pool, &errors)
            .iter()
            .map(|e| format!("  - proto/{e}"))
            .collect();
        fail(&format!(
            "the event catalogue breaks {} rule(s):\n{}",
            errors.len(),
            list.join("\n")
        ));
    }

    let out =
        PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR is not set")));
    if let Err(e) = std::fs::write(out.join("descriptor.bin"), &bytes) {
        fail(&format!("cannot write the descriptor set: {e}"));
    }
    // The messages and the clients, as every caller sees them.
    if let Err(e) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds.clone())
    {
        fail(&format!("code generation failed: {e}"));
    }
    // The servers apart, on the messages above, except that the server
    // takes `PublishRequest` as `proto::server::PublishRequest`: its event
    // stays encoded bytes, which the schema decodes once, dynamically.
    // Decoding it into the generated types first, then encoding it again
    // for that, was a tenth of the bridge's work per publish.
    let server_dir = out.join("server");
    if let Err(e) = std::fs::create_dir_all(&server_dir) {
        fail(&format!("cannot create {}: {e}", server_dir.display()));
    }
    let mut servers = fds;
    servers.file.retain(|f| !f.service.is_empty());
    if let Err(e) = tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&server_dir)
        .extern_path(".ssebridge.v1", "crate::proto::ssebridge::v1")
        .extern_path(".events.v1", "crate::proto::events::v1")
        .extern_path(
            ".ssebridge.v1.PublishRequest",
            "crate::proto::server::PublishRequest",
        )
        .compile_fds(servers)
    {
        fail(&format!("server code generation failed: {e}"));
    }
}
