//! Column encodings shared by every table: JSON documents kept as TEXT (the same on both
//! backends, unlike `jsonb`), text-valued enums, and the user-or-org namespace pair.

use sqlx::decode::Decode;
use sqlx::encode::{Encode, IsNull};
use sqlx::error::BoxDynError;
use sqlx::{Database, Type};

use crate::error::StoreError;
use crate::ids::{OrgId, UserId};

/// A JSON document stored as TEXT. Row structs decode through it with
/// `#[sqlx(try_from = "JsonText")]` and expose plain `serde_json::Value`s.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonText(pub serde_json::Value);

impl<DB: Database> Type<DB> for JsonText
where
    String: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as Type<DB>>::type_info()
    }

    fn compatible(type_info: &DB::TypeInfo) -> bool {
        <String as Type<DB>>::compatible(type_info)
    }
}

impl<'q, DB: Database> Encode<'q, DB> for JsonText
where
    String: Encode<'q, DB>,
{
    fn encode_by_ref(&self, buffer: &mut DB::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, DB>>::encode(serde_json::to_string(&self.0)?, buffer)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for JsonText
where
    String: Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <String as Decode<'r, DB>>::decode(value)?;
        Ok(JsonText(serde_json::from_str(&text)?))
    }
}

impl From<JsonText> for serde_json::Value {
    fn from(text: JsonText) -> serde_json::Value {
        text.0
    }
}

/// A nullable JSON column; decodes SQL NULL as `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct NullableJsonText(pub Option<serde_json::Value>);

impl<DB: Database> Type<DB> for NullableJsonText
where
    String: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as Type<DB>>::type_info()
    }

    fn compatible(type_info: &DB::TypeInfo) -> bool {
        <String as Type<DB>>::compatible(type_info)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for NullableJsonText
where
    Option<String>: Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
        match <Option<String> as Decode<'r, DB>>::decode(value)? {
            Some(text) => Ok(NullableJsonText(Some(serde_json::from_str(&text)?))),
            None => Ok(NullableJsonText(None)),
        }
    }
}

impl From<NullableJsonText> for Option<serde_json::Value> {
    fn from(text: NullableJsonText) -> Option<serde_json::Value> {
        text.0
    }
}

/// Serialises a JSON value for binding into a TEXT column.
pub(crate) fn to_text(value: &serde_json::Value) -> String {
    // Serialising a `Value` cannot fail: its map keys are always strings.
    serde_json::to_string(value).unwrap_or_else(|_| String::from("null"))
}

pub(crate) fn optional_to_text(value: &Option<serde_json::Value>) -> Option<String> {
    value.as_ref().map(to_text)
}

/// Declares a text-valued enum with its SQL spelling and `TryFrom<String>` for row decoding.
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$variant_meta:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$variant_meta])* #[serde(rename = $text)] $variant),*
        }

        impl $name {
            /// The value stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }

            /// Parses the stored spelling.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::error::StoreError;

            fn try_from(text: String) -> Result<$name, $crate::error::StoreError> {
                $name::parse(&text).ok_or_else(|| $crate::error::StoreError::Corrupt {
                    message: format!("unknown {} {text:?}", stringify!($name)),
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

/// The owner of a batch spec, batch change or secret: a user or an org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Namespace {
    User(UserId),
    Org(OrgId),
}

impl Namespace {
    /// The (`namespace_user_id`, `namespace_org_id`) column pair.
    pub(crate) fn columns(self) -> (Option<UserId>, Option<OrgId>) {
        match self {
            Namespace::User(user_id) => (Some(user_id), None),
            Namespace::Org(org_id) => (None, Some(org_id)),
        }
    }

    /// Rebuilds the namespace from its column pair; exactly one is set by a CHECK constraint.
    pub(crate) fn from_columns(
        user_id: Option<UserId>,
        org_id: Option<OrgId>,
    ) -> Result<Namespace, StoreError> {
        match (user_id, org_id) {
            (Some(user_id), None) => Ok(Namespace::User(user_id)),
            (None, Some(org_id)) => Ok(Namespace::Org(org_id)),
            _ => Err(StoreError::Corrupt {
                message: String::from("a row has no single namespace"),
            }),
        }
    }
}
