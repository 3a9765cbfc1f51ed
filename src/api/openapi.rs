//! The OpenAPI 3 description of the whole API, served so clients and fuzzers can read the
//! contract; a test keeps it in step with the route table.

use crate::api::ctx::Ctx;
use crate::error::Result;
use crate::http::{Request, Response};

pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// # `GET /api/openapi.json`
/// The API description (OpenAPI 3).
pub fn openapi(_ctx: &Ctx, _req: &Request) -> Result<Response> {
    Ok(Response::new(200)
        .with_header("Content-Type", "application/json")
        .with_body(OPENAPI_JSON.as_bytes().to_vec()))
}
