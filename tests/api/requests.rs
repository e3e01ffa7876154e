//! Requests of any crm.v1 method, built and sent through the descriptor set
//! rather than the generated clients, so that a test can reach every method
//! and every text field (a field added later included).

use std::time::Duration;

use crm_classify::pb;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    MethodDescriptor, Value,
};
use tonic::{
    Request, Status, codegen::http::uri::PathAndQuery, metadata::MetadataValue, transport::Channel,
};
use tonic_prost::ProstCodec;

use crate::helpers::TestApp;

/// How long a stream's first message or status is waited for; a valid
/// watch sends nothing until a change or a heartbeat.
const FIRST_MESSAGE_WAIT: Duration = Duration::from_millis(50);

/// Every method of the service's own API.
pub fn methods() -> Vec<MethodDescriptor> {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptor set");
    pool.services()
        .filter(|s| s.package_name() == "crm.v1")
        .flat_map(|s| s.methods().collect::<Vec<_>>())
        .collect()
}

/// What a text is in its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Scalar,
    Item,
    MapKey,
    MapValue,
}

/// One place a request holds text: a string field (in nested messages
/// too), one more item of a list of strings, or a key or a value of a map.
#[derive(Clone)]
pub struct TextSlot {
    /// The fields leading to the text, outermost first.
    fields: Vec<FieldDescriptor>,
    role: Role,
}

impl TextSlot {
    /// The name of the field path, for messages (`customer.attributes key`).
    pub fn label(&self) -> String {
        let path = self
            .fields
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(".");
        match self.role {
            Role::Scalar => path,
            Role::Item => format!("{path}[]"),
            Role::MapKey => format!("{path} key"),
            Role::MapValue => format!("{path} value"),
        }
    }

    /// Puts `text` into `request`, keeping what is there (a list gets one
    /// more item, a map one more entry); the path a field violation about
    /// it names (`customer.group_ids[2]`, or the map's field).
    pub fn put(&self, request: &mut DynamicMessage, text: &str) -> String {
        put_in(request, &self.fields, self.role, text)
    }
}

fn put_in(
    message: &mut DynamicMessage,
    fields: &[FieldDescriptor],
    role: Role,
    text: &str,
) -> String {
    let (field, rest) = fields.split_first().expect("a slot names a field");
    let name = field.name();
    let string = |text: &str| Value::String(text.to_owned());
    match (message.get_field_mut(field), role) {
        (Value::Message(inner), _) if !rest.is_empty() => {
            format!("{name}.{}", put_in(inner, rest, role, text))
        }
        (Value::List(items), Role::Item) => {
            items.push(string(text));
            format!("{name}[{}]", items.len() - 1)
        }
        (Value::Map(entries), Role::MapKey) => {
            entries.insert(MapKey::String(text.to_owned()), string("value"));
            name.to_owned()
        }
        (Value::Map(entries), Role::MapValue) => {
            entries.insert(MapKey::String("key".to_owned()), string(text));
            name.to_owned()
        }
        (value, Role::Scalar) => {
            *value = string(text);
            name.to_owned()
        }
        (value, role) => panic!("{name}: a {role:?} slot on {value:?}"),
    }
}

/// Every place `input` holds text, nested messages, lists and maps included.
pub fn text_slots(input: &MessageDescriptor) -> Vec<TextSlot> {
    let mut slots = Vec::new();
    for field in input.fields() {
        let slot = |role| TextSlot {
            fields: vec![field.clone()],
            role,
        };
        match field.kind() {
            Kind::String if field.is_list() => slots.push(slot(Role::Item)),
            Kind::String => slots.push(slot(Role::Scalar)),
            Kind::Message(_) if field.is_map() => {
                slots.extend([slot(Role::MapKey), slot(Role::MapValue)]);
            }
            Kind::Message(nested) if !field.is_list() => {
                slots.extend(text_slots(&nested).into_iter().map(|inner| TextSlot {
                    fields: [vec![field.clone()], inner.fields].concat(),
                    role: inner.role,
                }));
            }
            _ => {}
        }
    }
    slots
}

/// Calls `method` with `request` as the test tenant.
pub async fn call(
    app: &TestApp,
    method: &MethodDescriptor,
    request: DynamicMessage,
) -> Result<(), Status> {
    let mut request = Request::new(request);
    let tenant = MetadataValue::try_from(app.tenant.as_str()).expect("tenant header");
    request.metadata_mut().insert("x-tenant-id", tenant);
    send(app.channel.clone(), method, request).await
}

/// Sends `request` (with only the metadata it carries) to `method`: the
/// call's status, and for a stream its first message or status if one
/// comes within [`FIRST_MESSAGE_WAIT`].
pub async fn send(
    channel: Channel,
    method: &MethodDescriptor,
    request: Request<DynamicMessage>,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let path = PathAndQuery::try_from(format!(
        "/{}/{}",
        method.parent_service().full_name(),
        method.name()
    ))
    .expect("method path");
    let codec = ProstCodec::<DynamicMessage, ()>::default();
    if !method.is_server_streaming() {
        return grpc.unary(request, path, codec).await.map(drop);
    }
    let mut stream = grpc
        .server_streaming(request, path, codec)
        .await?
        .into_inner();
    match tokio::time::timeout(FIRST_MESSAGE_WAIT, stream.message()).await {
        Ok(first) => first.map(drop),
        Err(_) => Ok(()),
    }
}

/// Fails the test unless `status` stays small: a message under 1 KB and
/// details under 4 KB, whatever the request held.
#[track_caller]
pub fn assert_small(status: &Status) {
    assert!(
        status.message().len() < 1024,
        "message of {} bytes",
        status.message().len()
    );
    assert!(
        status.details().len() < 4096,
        "details of {} bytes",
        status.details().len()
    );
}
