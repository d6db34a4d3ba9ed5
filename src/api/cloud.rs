//! `GET /v1/catalog` and `GET /v1/catalog/{product}`: the catalog of official cloud-service
//! events ([`crate::cloud`]). Read-only and the same on every server: any valid token may read
//! it.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiResult, ErrorBody};
use crate::cloud::{self, Product, ProductSummary};

/// No product of the catalog has this key, type prefix or source.
pub const PRODUCT_NOT_FOUND: &str = "ResourceNotFound.Product";

/// `GET /v1/catalog` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogList {
    /// Every product that puts events into `default`, with its event types (no sample data;
    /// `GET /v1/catalog/{product}` has it).
    pub products: Vec<ProductSummary>,
}

/// The official cloud-service event catalog: every product with its source and event types.
#[utoipa::path(get, path = "/v1/catalog", tag = "catalog",
    responses((status = 200, body = CatalogList), (status = 401, body = ErrorBody)))]
pub async fn list_catalog(_caller: Caller) -> Json<CatalogList> {
    Json(CatalogList {
        products: cloud::catalog().summary(),
    })
}

/// One product of the catalog, by key (`cvm`), type prefix (`cdb`) or source
/// (`cvm.cloud.tencent`), with every event type's sample `data`.
#[utoipa::path(get, path = "/v1/catalog/{product}", tag = "catalog",
    params(("product" = String, Path, description = "product key, type prefix or source")),
    responses((status = 200, body = Product), (status = 401, body = ErrorBody),
        (status = 404, description = "no such product", body = ErrorBody)))]
pub async fn get_catalog_product(
    _caller: Caller,
    Path(product): Path<String>,
) -> ApiResult<Json<Product>> {
    match cloud::product(&product) {
        Some(p) => Ok(Json(p.clone())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            PRODUCT_NOT_FOUND,
            format!(
                "no product `{product}` in the cloud event catalog; products: {}",
                cloud::catalog().keys().join(", ")
            ),
        )),
    }
}
