//! The kinds the API serves: the table is `flotilla_spec::kinds`, shared
//! with the CLI; here an unknown plural becomes a 404.

pub use flotilla_spec::kinds::Kind;
use flotilla_spec::kinds::UnknownKind;

use super::ApiError;

impl From<UnknownKind> for ApiError {
    fn from(e: UnknownKind) -> Self {
        ApiError::not_found(format!("the server has {e}"))
    }
}
