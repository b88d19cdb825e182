//! Requests of the commands that talk to a running chiso.

/// Sends `request` with `token` as its bearer (if any): the body of a success, or an error
/// naming the status, the API's error code and its message.
pub async fn send(
    request: reqwest::RequestBuilder,
    token: Option<&str>,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await?;
    let status = response.status();
    let bytes = response.bytes().await?.to_vec();
    if status.is_success() {
        return Ok(bytes);
    }
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let code = answer["error"]["code"].as_str().unwrap_or("error");
    let message = answer["error"]["message"].as_str().unwrap_or("");
    Err(format!("{status}: {code}: {message}").into())
}
