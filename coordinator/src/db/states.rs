//! Item states and process statuses decoded strictly from their `text` columns: a value this
//! build does not know (a row written by a newer version, a hand edit) is a decode error, which
//! the caller logs and an API request answers as a 500 problem. It is never read as `queued`.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

use crate::domain::status::{ItemState, Status};

macro_rules! text_enum {
    ($ty:ty, $parse:expr) => {
        impl Type<Postgres> for $ty {
            fn type_info() -> PgTypeInfo {
                <&str as Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <&str as Type<Postgres>>::compatible(ty)
            }
        }

        impl<'r> Decode<'r, Postgres> for $ty {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<Postgres>>::decode(value)?;
                let parse: fn(&str) -> Result<$ty, String> = $parse;
                Ok(parse(text)?)
            }
        }

        impl Encode<'_, Postgres> for $ty {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Postgres>>::encode(self.as_str(), buf)
            }
        }
    };
}

text_enum!(ItemState, |s| s.parse());
text_enum!(Status, |s| Status::parse(s)
    .ok_or_else(|| format!("unknown process status {s:?}")));
