use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read};

use std::net::SocketAddr;
use std::str::FromStr;

use crate::common::{HTTPVersion, Method};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::connection::Connection;
use crate::limits::{Limits, UnsentBudget};
use std::sync::Arc;
use crate::Request;
use std::time::Instant;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    limits: Limits,

    // the socket's descriptor, handed to every request (see `Request::peer_fd`)
    #[cfg(unix)]
    raw_fd: Option<std::os::unix::io::RawFd>,

    // A handle on the socket itself, for its timeouts and for the writes of the
    // connection's own thread (see `write_response`).
    control: Option<Connection>,

    // Whether a first byte has arrived: until then the shorter `first_byte_timeout` applies.
    started: bool,

    // Shared by every connection: the bytes of large responses not yet written.
    unsent: Arc<UnsentBudget>,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    /// a version above 1.1 (answered `400`, then the connection ends: a client's mistake,
    /// never a server error)
    UnsupportedVersion,
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Limits,
        unsent: Arc<UnsentBudget>,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        // The write half's descriptor: a taken-over request's writer keeps it open (the read
        // half is closed when the connection's request loop ends).
        #[cfg(unix)]
        let raw_fd = write_socket.raw_fd();
        let control = write_socket.control();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(4096, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            limits,
            #[cfg(unix)]
            raw_fd,
            control,
            started: false,
            unsent,
        }
    }

    /// Writes a whole response on this connection's own thread, within `response_timeout`
    /// however slowly the client reads: each write may block only for what is left of that
    /// time. Past it the connection is shut down (an error is returned).
    pub(crate) fn write_response(&mut self, bytes: &[u8]) -> IoResult<()> {
        let deadline = Instant::now() + self.limits.response_timeout;
        let Some(sock) = self.control.as_mut() else {
            return Err(IoError::new(ErrorKind::Unsupported, "no socket to write to"));
        };
        let mut written = 0;
        let outcome = loop {
            if written == bytes.len() {
                break Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(IoError::new(ErrorKind::TimedOut, "response deadline passed"));
            }
            sock.set_write_timeout(Some(left));
            match std::io::Write::write(sock, &bytes[written..]) {
                Ok(0) => break Err(IoError::new(ErrorKind::WriteZero, "peer closed")),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // An event stream taken later on this connection writes under the usual timeout.
        sock.set_write_timeout(self.limits.write_timeout);
        if outcome.is_err() {
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
        outcome
    }

    /// The first byte of the connection arrived: from now on idle gaps get the ordinary
    /// read timeout (a connection that never sends a byte is closed sooner).
    fn first_byte_arrived(&mut self) {
        if !self.started {
            self.started = true;
            if let Some(sock) = self.control.as_mut() {
                sock.set_read_timeout(self.limits.read_timeout);
            }
        }
    }

    /// true if the connection is HTTPS
    #[allow(dead_code)]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    /// Bounded: a line longer than `max_line` is `InvalidData`, and once `deadline` is set
    /// (at the first byte of a request) a request that arrives too slowly is `TimedOut`.
    fn read_next_line(
        &mut self,
        max_line: usize,
        deadline: &mut Option<Instant>,
    ) -> IoResult<AsciiString> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            let byte = self.next_header_source.by_ref().bytes().next();

            let byte = match byte {
                Some(b) => b?,
                None => return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF")),
            };
            let now = Instant::now();
            match deadline {
                None => {
                    *deadline = Some(now + self.limits.request_timeout);
                    self.first_byte_arrived();
                }
                Some(d) if now > *d => {
                    return Err(IoError::new(ErrorKind::TimedOut, "request too slow"))
                }
                _ => {}
            }
            if buf.len() >= max_line {
                return Err(IoError::new(ErrorKind::InvalidData, "line too long"));
            }

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf)
                    .map_err(|_| IoError::new(ErrorKind::InvalidInput, "Header is not in ASCII"));
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        let mut deadline = None;
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = match self.read_next_line(self.limits.max_request_line, &mut deadline)
                {
                    Err(e) if e.kind() == ErrorKind::InvalidData => {
                        return Err(ReadError::WrongRequestLine)
                    }
                    other => other.map_err(ReadError::ReadIoError)?,
                };

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };
            // Refused before a request exists: upstream answered with a second writer while
            // the request still held the first, and its thread waited for good.
            if version > (1, 1) {
                return Err(ReadError::UnsupportedVersion);
            }

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                let mut header_bytes = 0;
                loop {
                    let line = match self.read_next_line(self.limits.max_header_bytes, &mut deadline)
                    {
                        Err(e) if e.kind() == ErrorKind::InvalidData => {
                            return Err(ReadError::WrongHeader(version))
                        }
                        other => other.map_err(ReadError::ReadIoError)?,
                    };

                    if line.is_empty() {
                        break;
                    };
                    // A field needs a name, and no control characters but tab (a NUL or a
                    // bare CR in a header is how requests get smuggled past proxies).
                    // A line starting with white space continues the previous one (obsolete
                    // line folding, RFC 9112 §5.2): refused, as proxies disagree on it.
                    let bytes = line.as_bytes();
                    if matches!(bytes.first(), Some(b' ') | Some(b'\t'))
                        || bytes.first() == Some(&b':')
                        || bytes.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
                    {
                        return Err(ReadError::WrongHeader(version));
                    }
                    header_bytes += line.len();
                    if headers.len() >= self.limits.max_headers
                        || header_bytes > self.limits.max_header_bytes
                    {
                        return Err(ReadError::WrongHeader(version));
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            if !body_framing_is_unambiguous(&headers) {
                return Err(ReadError::WrongHeader(version));
            }

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
            self.limits.prebuffer_body,
            deadline,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?;

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            let rq = match self.read() {
                Err(ReadError::WrongRequestLine) => {
                    let writer = self.sink.next().unwrap();
                    let response = Response::new_empty(StatusCode(400));
                    response
                        .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                        .ok();
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::WrongHeader(ver)) => {
                    let writer = self.sink.next().unwrap();
                    let response = Response::new_empty(StatusCode(400));
                    response.raw_print(writer, ver, &[], false, None).ok();
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    // request timeout
                    let writer = self.sink.next().unwrap();
                    let response = Response::new_empty(StatusCode(408));
                    response
                        .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                        .ok();
                    return None; // closing the connection
                }

                Err(ReadError::UnsupportedVersion) => {
                    let writer = self.sink.next().unwrap();
                    let response = Response::from_string(
                        "This server only supports HTTP versions 1.0 and 1.1".to_owned(),
                    )
                    .with_status_code(StatusCode(400))
                    .with_connection_close();
                    response
                        .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                        .ok();
                    return None;
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    let writer = self.sink.next().unwrap();
                    let response = Response::new_empty(StatusCode(417));
                    response.raw_print(writer, ver, &[], true, None).ok();
                    return None; // TODO: should be recoverable, but needs handling in case of body
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // A response that ends the connection says so (added for White Beat).
            let mut rq = rq;
            rq.closes_connection = self.no_more_requests;
            rq.unsent = Some(self.unsent.clone());
            #[cfg(unix)]
            {
                rq.peer_fd = self.raw_fd;
            }

            // returning the request
            return Some(rq);
        }
    }
}

/// Whether the body's length is given one way only (added for White Beat). Each of these is
/// a building block of request smuggling, where a proxy and this server would disagree on
/// where the body ends: `Content-Length` together with `Transfer-Encoding`, more than one
/// `Content-Length` or one that is not a plain number, and any `Transfer-Encoding` other
/// than exactly `chunked`. Such a request is `400` and its connection closed.
fn body_framing_is_unambiguous(headers: &[crate::Header]) -> bool {
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|h| h.field.equiv("Content-Length"))
        .map(|h| h.value.as_str())
        .collect();
    let encodings: Vec<&str> = headers
        .iter()
        .filter(|h| h.field.equiv("Transfer-Encoding"))
        .map(|h| h.value.as_str())
        .collect();
    let plain_number =
        |v: &str| !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit());
    match (lengths.as_slice(), encodings.as_slice()) {
        ([], []) => true,
        ([length], []) => plain_number(length),
        ([], [encoding]) => encoding.eq_ignore_ascii_case("chunked"),
        _ => false,
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
