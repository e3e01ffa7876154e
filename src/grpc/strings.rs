//! The rule every string of every request obeys, checked once for the whole
//! message before a handler reads it: no U+0000 (PostgreSQL cannot store it
//! in text). The message is walked through its descriptor, so a field added
//! to a proto is covered without anyone remembering to.

use std::sync::LazyLock;

use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, Value};

use crate::{
    error::{AppError, AppResult, FieldViolation, quoted},
    pb,
};

/// What a violation of the rule says.
pub const NUL_REFUSED: &str = "may not contain the NUL character (U+0000)";

static POOL: LazyLock<Result<DescriptorPool, String>> =
    LazyLock::new(|| DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()));

/// INVALID_ARGUMENT naming every string field of `message` (nested
/// messages, lists and maps included) that holds a NUL.
pub fn check<M: Message + Name>(message: &M) -> AppResult<()> {
    let mut violations = Vec::new();
    walk(&dynamic(message)?, "", &mut violations);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(AppError::InvalidArgument(violations))
    }
}

/// `message` as a message its descriptor describes.
fn dynamic<M: Message + Name>(message: &M) -> AppResult<DynamicMessage> {
    let pool = POOL.as_ref().map_err(|e| AppError::Internal(e.clone()))?;
    let name = M::full_name();
    let descriptor = pool
        .get_message_by_name(&name)
        .ok_or_else(|| AppError::Internal(format!("no descriptor for {name}")))?;
    DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| AppError::Internal(format!("re-reading {name}: {e}")))
}

fn walk(message: &DynamicMessage, prefix: &str, violations: &mut Vec<FieldViolation>) {
    for (field, value) in message.fields() {
        let path = if prefix.is_empty() {
            field.name().to_owned()
        } else {
            format!("{prefix}.{}", field.name())
        };
        visit(value, path, violations);
    }
}

fn visit(value: &Value, path: String, violations: &mut Vec<FieldViolation>) {
    match value {
        Value::String(text) if text.contains('\0') => {
            violations.push(FieldViolation::new(path, NUL_REFUSED));
        }
        Value::Message(message) => walk(message, &path, violations),
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                visit(item, format!("{path}[{i}]"), violations);
            }
        }
        Value::Map(entries) => {
            for (key, item) in entries {
                let key = match key {
                    MapKey::String(key) => key.clone(),
                    other => format!("{other:?}"),
                };
                if key.contains('\0') {
                    violations.push(FieldViolation::new(
                        &path,
                        format!("key {} {NUL_REFUSED}", quoted(&key)),
                    ));
                }
                let mut inner = Vec::new();
                visit(item, String::new(), &mut inner);
                if !inner.is_empty() {
                    violations.push(FieldViolation::new(
                        &path,
                        format!("the value of {} {NUL_REFUSED}", quoted(&key)),
                    ));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn violated(result: AppResult<()>) -> Vec<String> {
        match result {
            Ok(()) => Vec::new(),
            Err(AppError::InvalidArgument(v)) => v.into_iter().map(|v| v.field).collect(),
            Err(other) => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn nested_repeated_and_map_strings_are_named_by_their_path() {
        let request = pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                name: "An".into(),
                owner_id: "u\0".into(),
                group_ids: vec!["ok".into(), "\0".into()],
                attributes: BTreeMap::from([("k".to_owned(), "v\0".to_owned())]),
                ..Default::default()
            }),
            request_id: String::new(),
            reason: "\0".into(),
        };
        assert_eq!(
            violated(check(&request)),
            vec![
                "customer.owner_id",
                "customer.group_ids[1]",
                "customer.attributes",
                "reason"
            ]
        );
    }

    #[test]
    fn text_without_nul_passes_whatever_else_it_holds() {
        let request = pb::ListCustomersRequest {
            query: "Nguyễn \u{1} \t".into(),
            ..Default::default()
        };
        assert_eq!(violated(check(&request)), Vec::<String>::new());
    }

    #[test]
    fn the_descriptor_set_describes_every_service() {
        let pool = POOL.as_ref().expect("the descriptor set decodes");
        let services: Vec<_> = pool.services().collect();
        assert_eq!(services.len(), 4);
        for method in services.iter().flat_map(|s| s.methods()) {
            assert!(
                method.input().full_name().starts_with("crm.v1."),
                "{}",
                method.full_name()
            );
        }
    }
}
