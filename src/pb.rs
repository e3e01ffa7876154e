//! Generated protobuf messages and tonic services for `crm.v1`, and the
//! descriptor set that server reflection serves.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("crm.v1");

/// Encoded `FileDescriptorSet` of every `crm.v1` proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("crm_descriptor");
