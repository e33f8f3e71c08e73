//! The HTTP client of the user commands: `FLOTILLA_URL` + `FLOTILLA_TOKEN`, JSON in and out,
//! and server errors turned into messages that say what to do.

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where the server is and who the user is.
#[derive(Clone, Debug)]
pub struct Client {
    base_url: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(url: Option<String>, token: Option<String>) -> anyhow::Result<Client> {
        let base_url = url
            .context("no server given: set FLOTILLA_URL (or pass --url), e.g. the URL `flotilla up` printed")?
            .trim_end_matches('/')
            .to_owned();
        let token = token.context("no access token given: set FLOTILLA_TOKEN (or pass --token), e.g. the token `flotilla up` printed")?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .context("creating the HTTP client")?;
        Ok(Client { base_url, token, http })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub async fn get<Response: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Response> {
        let request = self.http.get(format!("{}{path}", self.base_url));
        self.send(request, path).await
    }

    pub async fn post<Body: Serialize, Response: DeserializeOwned>(&self, path: &str, body: &Body) -> anyhow::Result<Response> {
        let request = self.http.post(format!("{}{path}", self.base_url)).json(body);
        self.send(request, path).await
    }

    pub async fn put<Body: Serialize, Response: DeserializeOwned>(&self, path: &str, body: &Body) -> anyhow::Result<Response> {
        let request = self.http.put(format!("{}{path}", self.base_url)).json(body);
        self.send(request, path).await
    }

    pub async fn patch<Body: Serialize, Response: DeserializeOwned>(&self, path: &str, body: &Body) -> anyhow::Result<Response> {
        let request = self.http.patch(format!("{}{path}", self.base_url)).json(body);
        self.send(request, path).await
    }

    /// PUT that expects no body back.
    pub async fn put_empty<Body: Serialize>(&self, path: &str, body: &Body) -> anyhow::Result<()> {
        let request = self.http.put(format!("{}{path}", self.base_url)).json(body);
        self.execute(request, path).await.map(drop)
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let request = self.http.delete(format!("{}{path}", self.base_url));
        self.execute(request, path).await.map(drop)
    }

    /// POST that expects no body back.
    pub async fn post_empty<Body: Serialize>(&self, path: &str, body: &Body) -> anyhow::Result<()> {
        let request = self.http.post(format!("{}{path}", self.base_url)).json(body);
        let response = self.execute(request, path).await?;
        drop(response);
        Ok(())
    }

    async fn send<Response: DeserializeOwned>(&self, request: reqwest::RequestBuilder, path: &str) -> anyhow::Result<Response> {
        let response = self.execute(request, path).await?;
        response.json().await.with_context(|| format!("reading the server's answer to {path}"))
    }

    async fn execute(&self, request: reqwest::RequestBuilder, path: &str) -> anyhow::Result<reqwest::Response> {
        let response = request
            .header("Authorization", format!("token {}", self.token))
            .send()
            .await
            .with_context(|| format!("cannot reach the Flotilla server at {} (is it running? check FLOTILLA_URL)", self.base_url))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<flotilla_wire::ErrorBody>(&text).map(|body| body.error).unwrap_or(text);
        match status.as_u16() {
            401 => bail!("the server refused the token: {message}\nset FLOTILLA_TOKEN to a valid access token"),
            403 => bail!("not allowed: {message}"),
            _ => bail!("{path}: {message} (HTTP {status})"),
        }
    }
}
