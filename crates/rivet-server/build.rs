//! Compiles the gRPC service (proto/inference.proto) with the protoc that bootstrap.sh installs.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/inference.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .compile_protos(&["proto/inference.proto"], &["proto"])?;
    Ok(())
}
