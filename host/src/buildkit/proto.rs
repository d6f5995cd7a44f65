//! The generated protobuf messages and gRPC stubs for BuildKit, from the
//! `.proto` files under `proto/` (compiled by `build.rs`).
//!
//! This is the only module that includes generated code; everything else
//! names these types through it. It holds no hand-written logic: the wire
//! schema lives in `proto/`, never here.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub mod pb {
    tonic::include_proto!("pb");
}

pub mod moby {
    pub mod buildkit {
        pub mod v1 {
            tonic::include_proto!("moby.buildkit.v1");

            pub mod apicaps {
                tonic::include_proto!("moby.buildkit.v1.apicaps");
            }

            pub mod frontend {
                tonic::include_proto!("moby.buildkit.v1.frontend");
            }

            pub mod types {
                tonic::include_proto!("moby.buildkit.v1.types");
            }
        }
    }

    pub mod filesync {
        pub mod v1 {
            tonic::include_proto!("moby.filesync.v1");
        }
    }
}
