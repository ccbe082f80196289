//! `GET /api/v1/me`: exactly the seed's shape, plus `environment`.

use align_keys::vocabulary::NamedSet;
use align_keys::{Environment, KeyId, OrganizationId, ProjectId, UserId};
use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};

/// The answer, serialised straight from the cached record (no intermediate `Value`). Fields
/// are in alphabetical order, the order the former `json!` object had, so the bytes are the
/// same.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Me<'a> {
    api_key_id: KeyId,
    created_by_user_id: UserId,
    environment: Environment,
    key_name: &'a str,
    key_prefix: &'a str,
    last_used_at: String,
    organization_id: OrganizationId,
    permissions: Option<NamedSet<'a>>,
    scope: &'static str,
    scoped_project_id: Option<ProjectId>,
}

pub(super) fn get(req: &Request) -> Result<Response, ApiError> {
    let k = req.auth.key.record();
    let me = Me {
        api_key_id: k.id,
        created_by_user_id: k.created_by,
        environment: k.environment,
        key_name: &k.name,
        key_prefix: &k.prefix,
        last_used_at: h::timestamp(req.auth.key.last_used_at()),
        organization_id: k.organization_id,
        permissions: k.permission_names(),
        scope: k.scope.kind(),
        scoped_project_id: k.scope.project_id(),
    };
    Ok(h::raw_json(StatusCode::OK, Bytes::from(me.to_json())))
}

impl Me<'_> {
    /// The bytes `serde_json::to_vec(self)` gives (`written_me_is_serdes`), written directly:
    /// this is the answer of every request of the benchmark's valid-key case, and serde's
    /// per-field escaping of names and values was most of its cost (about 5 800 of the
    /// request's 73 500 instructions, counted). Only the key's name and the permission names
    /// can need escaping; they still go through serde_json. The ids are UUIDs, the prefix,
    /// timestamp and fixed words are ASCII without `"` or `\`.
    fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(400);
        let mut uuid = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let mut id = |out: &mut Vec<u8>, field: &str, id: uuid::Uuid| {
            out.extend_from_slice(field.as_bytes());
            out.push(b'"');
            out.extend_from_slice(id.hyphenated().encode_lower(&mut uuid).as_bytes());
            out.push(b'"');
        };
        id(&mut out, r#"{"apiKeyId":"#, self.api_key_id.0);
        id(
            &mut out,
            r#","createdByUserId":"#,
            self.created_by_user_id.0,
        );
        out.extend_from_slice(br#","environment":""#);
        out.extend_from_slice(self.environment.as_str().as_bytes());
        out.extend_from_slice(br#"","keyName":"#);
        json_string(&mut out, self.key_name);
        out.extend_from_slice(br#","keyPrefix":"#);
        json_string(&mut out, self.key_prefix);
        out.extend_from_slice(br#","lastUsedAt":""#);
        out.extend_from_slice(self.last_used_at.as_bytes());
        out.push(b'"');
        id(&mut out, r#","organizationId":"#, self.organization_id.0);
        out.extend_from_slice(br#","permissions":"#);
        match &self.permissions {
            None => out.extend_from_slice(b"null"),
            Some(names) => {
                out.push(b'[');
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    json_string(&mut out, name);
                }
                out.push(b']');
            }
        }
        out.extend_from_slice(br#","scope":""#);
        out.extend_from_slice(self.scope.as_bytes());
        out.push(b'"');
        match self.scoped_project_id {
            None => out.extend_from_slice(br#","scopedProjectId":null}"#),
            Some(p) => {
                id(&mut out, r#","scopedProjectId":"#, p.0);
                out.push(b'}');
            }
        }
        out
    }
}

/// `text` as a JSON string, escaped as serde_json escapes it.
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing into a `Vec` cannot fail, and a `str` always serialises.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use align_keys::vocabulary::Vocabulary;
    use align_keys::{Environment, KeyId, OrganizationId, PermissionSet, ProjectId, UserId};
    use proptest::prelude::*;

    use super::Me;

    proptest! {
        /// The written `/me` is byte for byte what serde writes, for any name, permissions,
        /// environment and scope.
        #[test]
        fn written_me_is_serdes(
            ids in any::<[u128; 4]>(),
            name in any::<String>(),
            prefix in "[a-z_0-9]{0,16}",
            sandbox in any::<bool>(),
            bits in any::<u64>(),
            with_permissions in any::<bool>(),
            project in any::<bool>(),
        ) {
            let permissions = with_permissions
                .then(|| Vocabulary::SERVER.named(PermissionSet::from_bits(bits)));
            let me = Me {
                api_key_id: KeyId(uuid::Uuid::from_u128(ids[0])),
                created_by_user_id: UserId(uuid::Uuid::from_u128(ids[1])),
                environment: if sandbox { Environment::Sandbox } else { Environment::Live },
                key_name: &name,
                key_prefix: &prefix,
                last_used_at: "2026-12-07T10:19:16.959Z".to_owned(),
                organization_id: OrganizationId(uuid::Uuid::from_u128(ids[2])),
                permissions,
                scope: if project { "project" } else { "organization" },
                scoped_project_id: project.then(|| ProjectId(uuid::Uuid::from_u128(ids[3]))),
            };
            prop_assert_eq!(
                String::from_utf8(me.to_json()).unwrap(),
                serde_json::to_string(&me).unwrap()
            );
        }
    }
}
