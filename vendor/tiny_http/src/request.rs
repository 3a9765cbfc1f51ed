use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::limits::{Reservation, UnsentBudget, SMALL_RESPONSE};
use crate::util::{EqualReader, FusedReader};
use crate::{HTTPVersion, Header, Method, Response, StatusCode};
use chunked_transfer::Decoder;

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// This mechanic is disabled if:
///
///  - The body of a request is large enough (handling requires pipelining requires storing the
///    body of the request in a buffer ; if the body is too big, tiny-http will avoid doing that)
///  - A request sends a `Expect: 100-continue` header (which means that the client waits to
///    know whether its body will be processed before sending it)
///  - A request sends a `Connection: close` header or `Connection: upgrade` header (used for
///    websockets), which indicates that this is the last request that will be received on this
///    connection
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Box<dyn Write + Send + 'static>>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // If Some, the response is handed back through it to the connection's own thread, which
    // writes it (see `Handback`); otherwise it is written here.
    notify_when_responded: Option<Sender<Handback>>,

    // Set once the whole body has been read (at once for an empty or pre-buffered body): a
    // connection whose last body was left unread cannot serve another request.
    body_done: Arc<AtomicBool>,

    /// This is the last request of its connection: its response carries `Connection: close`.
    pub(crate) closes_connection: bool,

    /// Where large unsent responses are counted (see `Limits::max_unsent_bytes`).
    pub(crate) unsent: Option<Arc<UnsentBudget>>,

    /// The socket's descriptor (see `peer_fd`).
    #[cfg(unix)]
    pub(crate) peer_fd: Option<std::os::unix::io::RawFd>,
}

/// What a request's handler hands back to its connection's thread (added for White Beat).
/// No worker, nor any other thread shared by many clients, writes a response to a socket:
/// a client that reads slowly would hold it. A response is serialized in memory and the
/// connection's own thread writes it, under a total deadline.
pub(crate) enum Handback {
    /// A whole response; `keep_alive` is false when the connection must end after it.
    Write {
        bytes: Vec<u8>,
        keep_alive: bool,
        /// Counts a large response against `Limits::max_unsent_bytes` until it is written.
        reservation: Option<Reservation>,
    },
    /// The handler took the socket's writer (an event stream): the connection reads no
    /// further requests, and whoever holds the writer writes.
    Streamed,
}

/// Marks the body as read once the reader reports its end.
struct CompletionReader<R> {
    inner: R,
    done: Arc<AtomicBool>,
}

impl<R: Read> Read for CompletionReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.done.store(true, Ordering::SeqCst);
        }
        Ok(n)
    }
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// Builds a new request.
///
/// After the request line and headers have been read from the socket, a new `Request` object
/// is built.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// It is the responsibility of the `Request` to read only the data of the request and not further.
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(clippy::too_many_arguments)]
pub fn new_request<R, W>(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    mut source_data: R,
    mut writer: W,
    prebuffer: usize,
    deadline: Option<std::time::Instant>,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    // finding the transfer-encoding header
    let transfer_encoding = headers
        .iter()
        .find(|h: &&Header| h.field.equiv("Transfer-Encoding"))
        .map(|h| h.value.clone());

    // finding the content-length header
    let content_length = if transfer_encoding.is_some() {
        // if transfer-encoding is specified, the Content-Length
        // header must be ignored (RFC2616 #4.4)
        None
    } else {
        headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Content-Length"))
            .and_then(|h| FromStr::from_str(h.value.as_str()).ok())
    };

    // true if the client sent a `Expect: 100-continue` header
    let mut expects_continue = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Expect"))
            .map(|h| h.value.as_str())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(RequestCreationError::ExpectationFailed),
        }
    };

    // we wrap `source_data` around a reading whose nature depends on the transfer-encoding and
    // content-length headers
    let body_done = Arc::new(AtomicBool::new(true));
    let streamed = |reader: Box<dyn Read + Send + 'static>| {
        body_done.store(false, Ordering::SeqCst);
        Box::new(CompletionReader {
            inner: reader,
            done: body_done.clone(),
        }) as Box<dyn Read + Send + 'static>
    };
    // (Upstream handed the raw socket to a request with `Connection: upgrade`, whatever its
    // length headers; a worker reading that body then read a socket with no deadline. This
    // server upgrades nothing: a body is framed by its length headers alone.)
    let reader = if let Some(content_length) = content_length {
        if content_length == 0 {
            Box::new(io::empty()) as Box<dyn Read + Send + 'static>
        } else if content_length <= prebuffer.max(1024) {
            // If the body is small enough, read it here, on the connection's thread, so a
            // slow sender holds no worker; the deadline bounds how slow it may be. A client
            // waiting for `100 Continue` gets it from here too.
            if expects_continue {
                send_continue(&mut writer)?;
                expects_continue = false;
            }

            let mut buffer = vec![0; content_length];
            let mut offset = 0;

            while offset != content_length {
                if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                    let err = IoError::new(ErrorKind::TimedOut, "request body too slow");
                    return Err(RequestCreationError::CreationIoError(err));
                }
                let read = source_data.read(&mut buffer[offset..])?;
                if read == 0 {
                    // the socket returned EOF, but we were before the expected content-length
                    // aborting
                    let info = "Connection has been closed before we received enough data";
                    let err = IoError::new(ErrorKind::ConnectionAborted, info);
                    return Err(RequestCreationError::CreationIoError(err));
                }

                offset += read;
            }

            Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
        } else {
            let data_reader = EqualReader::new(source_data, content_length);
            streamed(Box::new(FusedReader::new(data_reader)))
        }
    } else if transfer_encoding.is_some() {
        // if a transfer-encoding was specified, then "chunked" is ALWAYS applied
        // over the message (RFC2616 #3.6)
        // Read up to `prebuffer` bytes of it here, under the deadline, for the same reason as
        // above; a longer body goes on from where this stopped.
        if expects_continue {
            send_continue(&mut writer)?;
            expects_continue = false;
        }
        let mut decoder = Decoder::new(source_data);
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        let mut finished = false;
        while buffer.len() <= prebuffer {
            if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                let err = IoError::new(ErrorKind::TimedOut, "request body too slow");
                return Err(RequestCreationError::CreationIoError(err));
            }
            let read = decoder.read(&mut chunk)?;
            if read == 0 {
                finished = true;
                break;
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        if finished {
            Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
        } else {
            streamed(Box::new(
                Cursor::new(buffer).chain(FusedReader::new(decoder)),
            ))
        }
    } else {
        // if we have neither a Content-Length nor a Transfer-Encoding,
        // assuming that we have no data
        // TODO: could also be multipart/byteranges
        Box::new(io::empty()) as Box<dyn Read + Send + 'static>
    };

    Ok(Request {
        data_reader: Some(reader),
        response_writer: Some(Box::new(writer) as Box<dyn Write + Send + 'static>),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
        body_length: content_length,
        must_send_continue: expects_continue,
        notify_when_responded: None,
        body_done,
        closes_connection: false,
        #[cfg(unix)]
        unsent: None,
        #[cfg(unix)]
        peer_fd: None,
    })
}

/// Sends the interim `100 Continue` a client announced it would wait for.
fn send_continue<W: Write>(writer: &mut W) -> Result<(), RequestCreationError> {
    writer
        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        .and_then(|_| writer.flush())
        .map_err(RequestCreationError::CreationIoError)
}

impl Request {
    /// The connection's socket descriptor, valid while the writer of `into_writer()` lives.
    /// Only inspect it (for example its TCP state); never read from it or change its flags.
    /// Reading is shut down on this socket once the request loop ends, so a peek always sees
    /// end-of-file.
    #[cfg(unix)]
    pub fn peer_fd(&self) -> Option<std::os::unix::io::RawFd> {
        self.peer_fd
    }

    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// If you call this on a non-websocket request, tiny-http will wait until this `Stream` object
    ///  is destroyed before continuing to read or write on the socket. Therefore you should always
    ///  destroy it as soon as possible.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        use crate::util::CustomStream;

        response
            .raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // TODO: unused result

        self.response_writer.as_mut().unwrap().flush().ok(); // TODO: unused result

        let stream = CustomStream::new(self.extract_reader_impl(), self.extract_writer_impl());
        if let Some(sender) = self.notify_when_responded.take() {
            sender.send(Handback::Streamed).ok();
        }
        Box::new(stream) as Box<dyn ReadWrite + Send>
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # extern crate rustc_serialize;
    /// # extern crate tiny_http;
    /// # use rustc_serialize::json::Json;
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # fn main() {
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    ///     let json: Json = content.parse().unwrap();
    /// }
    /// # }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            let msg = Response::new_empty(StatusCode(100));
            msg.raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                true,
                None,
            )
            .ok();
            self.response_writer.as_mut().unwrap().flush().ok();
            self.must_send_continue = false;
        }

        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer on the socket, for a response written over time
    /// (an event stream). The connection reads no further requests (changed for White Beat:
    /// upstream went on reading once the writer was dropped), so dropping the writer closes
    /// the socket. The holder writes under the socket's write timeout, on its own thread.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        let writer = self.extract_writer_impl();
        if let Some(sender) = self.notify_when_responded.take() {
            sender.send(Handback::Streamed).ok();
        }
        writer
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn Write + Send + 'static> {
        use std::mem;

        assert!(self.response_writer.is_some());

        let mut writer = None;
        mem::swap(&mut self.response_writer, &mut writer);
        writer.unwrap()
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        use std::mem;

        assert!(self.data_reader.is_some());

        let mut reader = None;
        mem::swap(&mut self.data_reader, &mut reader);
        reader.unwrap()
    }

    /// Sends a response to this request. Served by a server, the response is serialized
    /// here and written by the connection's own thread (see `Handback`), so this never
    /// blocks on the client.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();

        let do_not_send_body = self.method == Method::Head;
        // A body left unread cannot be skipped safely (the next request would start in its
        // middle) nor drained without tying up a thread: the connection ends instead.
        let keep_alive = !self.closes_connection && self.body_done.load(Ordering::SeqCst);
        let response = if keep_alive {
            response
        } else {
            response.with_connection_close()
        };

        if let Some(sender) = self.notify_when_responded.take() {
            drop(writer);
            let mut bytes = Vec::new();
            let printed = response.raw_print(
                &mut bytes,
                self.http_version.clone(),
                &self.headers,
                do_not_send_body,
                None,
            );
            let mut keep_alive = keep_alive && printed.is_ok();
            let mut reservation = None;
            if bytes.len() > SMALL_RESPONSE {
                if let Some(budget) = &self.unsent {
                    reservation = UnsentBudget::reserve(budget, bytes.len());
                    if reservation.is_none() {
                        // Too much is waiting for slow readers already: holding this too
                        // would let them fill the memory.
                        bytes = unsent_budget_exceeded(self.http_version.clone());
                        keep_alive = false;
                    }
                }
            }
            // The connection's thread waits for this in every case.
            sender
                .send(Handback::Write {
                    bytes,
                    keep_alive,
                    reservation,
                })
                .ok();
            return printed;
        }

        Self::ignore_client_closing_errors(response.raw_print(
            writer.by_ref(),
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
        ))?;

        Self::ignore_client_closing_errors(writer.flush())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }

    pub(crate) fn with_notify_sender(mut self, sender: Sender<Handback>) -> Self {
        self.notify_when_responded = Some(sender);
        self
    }
}

/// The `503` that replaces a large response when too many are waiting to be written.
fn unsent_budget_exceeded(version: HTTPVersion) -> Vec<u8> {
    let body = "{\"error\": \"The server is busy; try again shortly\"}";
    let response = Response::from_string(body)
        .with_status_code(StatusCode(503))
        .with_header(Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap())
        .with_header(Header::from_bytes(&b"Retry-After"[..], &b"5"[..]).unwrap())
        .with_connection_close();
    let mut bytes = Vec::new();
    let _ = response.raw_print(&mut bytes, version, &[], false, None);
    bytes
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
