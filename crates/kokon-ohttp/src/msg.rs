//! Binary HTTP (RFC 9292) messages inside the encapsulation: requests and
//! whole responses through the `bhttp` crate, and the streamed response
//! (indeterminate length, §3.2) written and read here, chunk by chunk.

use std::io::Cursor;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};

use crate::{OhttpError, varint};

/// The authority inner requests name: the gateway serves its own resources.
pub const AUTHORITY: &str = "kokon.gateway";
/// Most header fields an inner message may carry.
pub const MAX_FIELDS: usize = 64;
/// Most bytes of an inner message's field section (streamed responses).
pub const MAX_FIELD_SECTION: usize = 16 * 1024;
/// Largest content chunk of a streamed response a reader accepts.
pub const MAX_CONTENT_CHUNK: usize = 1 << 20;

/// A request as a known-length binary HTTP message.
pub fn encode_request(req: &Request<Bytes>) -> Vec<u8> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut m = bhttp::Message::request(
        req.method().as_str().as_bytes().to_vec(),
        b"https".to_vec(),
        AUTHORITY.as_bytes().to_vec(),
        path.as_bytes().to_vec(),
    );
    for (name, value) in req.headers() {
        m.put_header(name.as_str().as_bytes(), value.as_bytes());
    }
    m.write_content(req.body());
    let mut out = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// Reads a binary HTTP request (either length mode; its whole bytes are
/// here, so every length is checked against them before anything is
/// allocated).
pub fn decode_request(bytes: &[u8]) -> Result<Request<Bytes>, OhttpError> {
    let bad = OhttpError::BadMessage;
    let m = bhttp::Message::read_bhttp(&mut Cursor::new(bytes)).map_err(|_| bad("unreadable"))?;
    let control = m.control();
    let method = control.method().ok_or(bad("a response, not a request"))?;
    let method = Method::from_bytes(method).map_err(|_| bad("bad method"))?;
    let path = control.path().ok_or(bad("no path"))?;
    let path = std::str::from_utf8(path).map_err(|_| bad("bad path"))?;
    if !path.starts_with('/') {
        return Err(bad("the path is not absolute"));
    }
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .body(Bytes::copy_from_slice(m.content()))
        .map_err(|_| bad("bad path"))?;
    *req.headers_mut() = fields(m.header().fields())?;
    Ok(req)
}

fn fields(list: &[bhttp::Field]) -> Result<HeaderMap, OhttpError> {
    if list.len() > MAX_FIELDS {
        return Err(OhttpError::BadMessage("too many header fields"));
    }
    let mut map = HeaderMap::with_capacity(list.len());
    for f in list {
        let name = HeaderName::from_bytes(f.name())
            .map_err(|_| OhttpError::BadMessage("bad field name"))?;
        let value = HeaderValue::from_bytes(f.value())
            .map_err(|_| OhttpError::BadMessage("bad field value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// A whole response as a known-length binary HTTP message.
pub fn encode_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut m = bhttp::Message::response(
        bhttp::StatusCode::try_from(status.as_u16()).expect("a final status"),
    );
    for (name, value) in headers {
        m.put_header(name.as_str().as_bytes(), value.as_bytes());
    }
    m.write_content(body);
    let mut out = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// Reads a whole binary HTTP response.
pub fn decode_response(bytes: &[u8]) -> Result<(StatusCode, HeaderMap, Bytes), OhttpError> {
    let bad = OhttpError::BadMessage;
    let m = bhttp::Message::read_bhttp(&mut Cursor::new(bytes)).map_err(|_| bad("unreadable"))?;
    let status = m
        .control()
        .status()
        .ok_or(bad("a request, not a response"))?;
    let status = StatusCode::from_u16(status.code()).map_err(|_| bad("bad status"))?;
    Ok((
        status,
        fields(m.header().fields())?,
        Bytes::copy_from_slice(m.content()),
    ))
}

/// The start of a streamed response: framing indicator 3, the status and
/// the header fields. Content chunks follow ([`stream_chunk`]), then
/// [`stream_end`].
pub fn stream_head(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    varint::put(&mut out, 3);
    varint::put(&mut out, u64::from(status.as_u16()));
    for (name, value) in headers {
        put_vec(&mut out, name.as_str().as_bytes());
        put_vec(&mut out, value.as_bytes());
    }
    varint::put(&mut out, 0);
    out
}

/// One content chunk of a streamed response (empty data: nothing, since a
/// zero length ends the content).
pub fn stream_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    if !data.is_empty() {
        put_vec(&mut out, data);
    }
    out
}

/// The end of a streamed response: the content ends, no trailer fields.
pub fn stream_end() -> Vec<u8> {
    vec![0, 0]
}

fn put_vec(out: &mut Vec<u8>, b: &[u8]) {
    varint::put(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// What a streamed response yields as its bytes arrive.
#[derive(Debug, PartialEq, Eq)]
pub enum Part {
    Head(StatusCode, HeaderMap),
    Data(Bytes),
    End,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Head,
    Content,
    Trailer,
    Done,
}

/// Reads a streamed (indeterminate-length) binary HTTP response
/// incrementally, within [`MAX_FIELD_SECTION`] and [`MAX_CONTENT_CHUNK`].
#[derive(Debug)]
pub struct StreamReader {
    buf: Vec<u8>,
    state: State,
}

impl Default for StreamReader {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            state: State::Head,
        }
    }
}

impl StreamReader {
    /// Adds bytes; returns the parts they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Part>, OhttpError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let before = std::mem::discriminant(&self.state);
            let step = match self.state {
                State::Head => self.head()?,
                State::Content => self.content()?,
                State::Trailer => self.trailer()?,
                // Padding (zeros) may follow the end.
                State::Done if self.buf.iter().all(|&b| b == 0) => None,
                State::Done => return Err(OhttpError::AfterFinal),
            };
            match step {
                Some(p) => out.push(p),
                None if std::mem::discriminant(&self.state) != before => {}
                None => break,
            }
        }
        Ok(out)
    }

    fn head(&mut self) -> Result<Option<Part>, OhttpError> {
        let bad = OhttpError::BadMessage;
        let mut at = 0;
        let Some((framing, n)) = varint::get(&self.buf) else {
            return Ok(None);
        };
        if framing != 3 {
            return Err(bad("not a streamed response"));
        }
        at += n;
        let Some((status, n)) = varint::get(&self.buf[at..]) else {
            return self.need_more();
        };
        at += n;
        let status = u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok());
        let status = status
            .filter(|s| !s.is_informational())
            .ok_or(bad("bad status"))?;
        let Some((fields, n)) = field_section(&self.buf[at..])? else {
            return self.need_more();
        };
        at += n;
        let mut headers = HeaderMap::with_capacity(fields.len());
        for (name, value) in fields {
            headers.append(
                HeaderName::from_bytes(name).map_err(|_| bad("bad field name"))?,
                HeaderValue::from_bytes(value).map_err(|_| bad("bad field value"))?,
            );
        }
        self.buf.drain(..at);
        self.state = State::Content;
        Ok(Some(Part::Head(status, headers)))
    }

    fn need_more(&self) -> Result<Option<Part>, OhttpError> {
        if self.buf.len() > MAX_FIELD_SECTION {
            return Err(OhttpError::BadMessage("header section too large"));
        }
        Ok(None)
    }

    fn content(&mut self) -> Result<Option<Part>, OhttpError> {
        let Some((len, n)) = varint::get(&self.buf) else {
            return Ok(None);
        };
        if len == 0 {
            self.buf.drain(..n);
            self.state = State::Trailer;
            return Ok(None);
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_CONTENT_CHUNK {
            return Err(OhttpError::TooLarge(MAX_CONTENT_CHUNK));
        }
        if self.buf.len() < n + len {
            return Ok(None);
        }
        let data = Bytes::copy_from_slice(&self.buf[n..n + len]);
        self.buf.drain(..n + len);
        Ok(Some(Part::Data(data)))
    }

    fn trailer(&mut self) -> Result<Option<Part>, OhttpError> {
        // Trailer fields are read and dropped (Kokon sends none).
        let Some((_, at)) = field_section(&self.buf)? else {
            return self.need_more();
        };
        self.buf.drain(..at);
        self.state = State::Done;
        Ok(Some(Part::End))
    }

    /// Whether the whole response (its end included) was read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

/// An indeterminate-length field section at the front of `b` (field lines
/// up to a zero-length name): its lines and encoded length, `None` if cut
/// short; more than [`MAX_FIELDS`] lines is an error.
type Fields<'b> = Vec<(&'b [u8], &'b [u8])>;

fn field_section(b: &[u8]) -> Result<Option<(Fields<'_>, usize)>, OhttpError> {
    let mut fields = Vec::new();
    let mut at = 0;
    loop {
        let Some((name, n)) = read_vec(&b[at..])? else {
            return Ok(None);
        };
        at += n;
        if name.is_empty() {
            return Ok(Some((fields, at)));
        }
        let Some((value, n)) = read_vec(&b[at..])? else {
            return Ok(None);
        };
        at += n;
        if fields.len() >= MAX_FIELDS {
            return Err(OhttpError::BadMessage("too many header fields"));
        }
        fields.push((name, value));
    }
}

/// A length-prefixed byte string at the front of `b`: `None` if cut short.
fn read_vec(b: &[u8]) -> Result<Option<(&[u8], usize)>, OhttpError> {
    let Some((len, n)) = varint::get(b) else {
        return Ok(None);
    };
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_FIELD_SECTION {
        return Err(OhttpError::BadMessage("field too large"));
    }
    Ok(b.get(n..n + len).map(|v| (v, n + len)))
}
