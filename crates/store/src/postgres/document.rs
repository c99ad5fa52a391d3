//! A [`Document`] is a `jsonb` column read and written as its text: no
//! `serde_json::Value` is built on the way in or out.

use serde_json::value::RawValue;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::types::Json;
use sqlx::{Decode, Encode, Postgres, Type};

use crate::model::Document;

impl Type<Postgres> for Document {
    fn type_info() -> PgTypeInfo {
        <Json<&RawValue> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Json<&RawValue> as Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for Document {
    fn array_type_info() -> PgTypeInfo {
        <Json<&RawValue> as PgHasArrayType>::array_type_info()
    }
}

impl Encode<'_, Postgres> for Document {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <Json<&RawValue> as Encode<'_, Postgres>>::encode_by_ref(&Json(&*self.0), buf)
    }
}

impl<'r> Decode<'r, Postgres> for Document {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let Json(raw) = <Json<Box<RawValue>> as Decode<'r, Postgres>>::decode(value)?;
        Ok(Self(raw))
    }
}
