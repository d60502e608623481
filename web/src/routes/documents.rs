//! `/collections/{name}/documents`: uploads (JSON array, NDJSON or multipart files, staged and
//! indexed by a task), and single documents read or deleted.

use super::{authorize, St};
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::tasks::TaskView;
use axum::extract::{Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

const UPLOAD_FORMATS: &[&str] = &["txt", "md", "markdown", "html", "htm", "pdf", "json", "jsonl", "ndjson"];

/// `POST /collections/{name}/documents`: a JSON array, NDJSON, or multipart files. The
/// collection is created if missing (with `collections.manage`). Returns 202 with a task.
#[utoipa::path(post, path = "/collections/{name}/documents",
    request_body(content = String, description = "JSON array of {id, title, text, ...metadata}, NDJSON, or multipart/form-data files (txt, md, html, pdf, json, jsonl)"),
    responses((status = 202, body = TaskView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn add(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    authorize(&caller, Action::DocumentsAdd, &name)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    // Stage the upload before touching the collection, so bad input leaves it as it was.
    let staged = if ct.starts_with("multipart/form-data") {
        multipart_files(req).await?
    } else {
        if !crate::json::is_json(&ct) {
            let got = (!ct.is_empty()).then_some(ct.as_str());
            return Err(crate::json::unsupported(got, "application/json, application/x-ndjson or multipart/form-data"));
        }
        let body = axum::body::to_bytes(req.into_body(), state.config.max_upload_bytes)
            .await
            .map_err(|_| ApiError::too_large("the request body is too large"))?;
        vec![("documents.jsonl".to_string(), super::ndjson::documents_to_ndjson(&body, &ct)?)]
    };
    let s = state.clone();
    let task = state
        .blocking(move || {
            let dir = match s.clustered(&name)? {
                // A clustered collection: its documents go to the cluster's logs.
                Some(_) => s.cluster_upload_dir(&name)?,
                None => {
                    // Create the collection on first upload when the key may.
                    if !s.collection_exists(&name) {
                        caller.require(Action::CollectionsManage, Some(&name))?;
                    }
                    s.open_or_create(&name)?.new_upload_dir()?
                }
            };
            let n = staged.len();
            for (fname, data) in &staged {
                // The file's name, not the server's path to it.
                stage(&dir.join(fname), data).map_err(|e| ApiError::internal(format!("cannot stage {fname}: {e}")))?;
            }
            // The task is recorded (and answered 202) only once its files are on disk: a crash
            // after the answer re-runs the task on restart, from whole files.
            let parent = dir.parent().unwrap_or(&dir);
            sync_dir(&dir)
                .and_then(|()| sync_dir(parent))
                .map_err(|e| ApiError::internal(format!("cannot stage the upload: {e}")))?;
            s.tasks.enqueue(&name, dir, n)
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(task)))
}

/// Writes one staged file and flushes it to disk.
fn stage(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Flushes a directory's entries (the staged files' names) to disk.
fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The files of a multipart upload: supported formats only, at least one.
async fn multipart_files(req: Request) -> ApiResult<Vec<(String, Vec<u8>)>> {
    let mut mp = <Multipart as axum::extract::FromRequest<()>>::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request("bad_multipart", e.body_text()))?;
    let mut files = Vec::new();
    while let Some(field) = mp.next_field().await.map_err(multipart_error)? {
        let Some(fname) = field.file_name().map(safe_file_name) else { continue };
        let ext = fname.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
        if !UPLOAD_FORMATS.contains(&ext.as_str()) {
            return Err(ApiError::bad_request(
                "unsupported_format",
                format!("{fname}: unsupported file type; upload {}", UPLOAD_FORMATS.join(", ")),
            ));
        }
        let data = field.bytes().await.map_err(multipart_error)?;
        files.push((fname, data.to_vec()));
    }
    if files.is_empty() {
        return Err(ApiError::bad_request("no_files", "the multipart body holds no file"));
    }
    Ok(files)
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("the upload is too large")
    } else {
        ApiError::bad_request("bad_multipart", e.body_text())
    }
}

/// An uploaded file's name, made safe to create in the staging directory.
fn safe_file_name(name: &str) -> String {
    let base = std::path::Path::new(name).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let cleaned: String =
        base.chars().map(|c| if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    let cleaned = if cleaned.is_empty() { "upload".to_string() } else { cleaned };
    // File systems take 255 bytes a name: keep 100 characters, the extension included.
    if cleaned.chars().count() <= 100 {
        return cleaned;
    }
    let (stem, ext) = match cleaned.rsplit_once('.') {
        Some((stem, ext)) if ext.chars().count() <= 10 => (stem.to_string(), format!(".{ext}")),
        _ => (cleaned.clone(), String::new()),
    };
    stem.chars().take(100 - ext.chars().count()).collect::<String>() + &ext
}

#[derive(Serialize)]
struct DocumentView {
    id: String,
    title: String,
    source: String,
    metadata: std::collections::BTreeMap<String, serde_json::Value>,
    chunks: Vec<ChunkView>,
}

#[derive(Serialize)]
struct ChunkView {
    key: u64,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<u32>,
}

#[utoipa::path(get, path = "/collections/{name}/documents/{id}", responses((status = 200), (status = 404, body = ErrorBody)))]
pub(super) async fn get(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    authorize(&caller, Action::Search, &name)?;
    let s = state.clone();
    let doc = state
        .blocking(move || {
            if let Some(c) = s.clustered(&name)? {
                let (d, chunks) = c.document_blocking(&id)?.ok_or(sousuo_indexer::Error::NoSuchDocument(id))?;
                let chunks =
                    chunks.into_iter().map(|(key, ch)| ChunkView { key, text: ch.text, page: ch.page }).collect();
                return Ok(DocumentView { id: d.id, title: d.title, source: d.source, metadata: d.metadata, chunks });
            }
            let c = s.collection(&name)?;
            let d = c.get_doc(&id)?.ok_or(sousuo_indexer::Error::NoSuchDocument(id))?;
            let mut chunks = Vec::new();
            for k in &d.chunk_keys {
                if let Some(ch) = c.store().get_chunk(*k)? {
                    chunks.push(ChunkView { key: *k, text: ch.text, page: ch.page });
                }
            }
            Ok(DocumentView { id: d.id, title: d.title, source: d.source, metadata: d.metadata, chunks })
        })
        .await?;
    Ok(Json(doc).into_response())
}

#[utoipa::path(delete, path = "/collections/{name}/documents/{id}", responses((status = 200), (status = 404, body = ErrorBody)))]
pub(super) async fn delete(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&caller, Action::DocumentsDelete, &name)?;
    let s = state.clone();
    state
        .blocking(move || {
            if let (Some(cluster), Some(c)) = (&s.cluster, s.clustered(&name)?) {
                cluster.delete(&c, &id)?;
                return Ok(Json(serde_json::json!({"deleted": id})));
            }
            let c = s.collection(&name)?;
            if c.get_doc(&id)?.is_none() {
                return Err(sousuo_indexer::Error::NoSuchDocument(id).into());
            }
            c.delete(std::slice::from_ref(&id))?;
            c.refresh()?;
            Ok(Json(serde_json::json!({"deleted": id})))
        })
        .await
}
