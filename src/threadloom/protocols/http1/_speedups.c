/*
 * threadloom.protocols.http1._speedups: the common case of the HTTP/1.1 hot path, in C.
 *
 * Why: a hello-world request spends about a third of its Python time in llhttp's five
 * callbacks and in checking and joining the response's header fields. Both have a common
 * case that is simple to recognise: a short, clean request head, and a list of plain
 * (name, value) pairs.
 *
 * The rule that keeps this safe: every function here either handles the input *exactly* as
 * the Python code would, or returns None, and the caller then runs the Python code (which
 * also produces every error message). Nothing here raises for bad input and nothing here
 * refuses a request: a doubt is a None. Accepting less than the Python path is therefore
 * always correct; tests/protocols/test_speedups.py checks that what is accepted is handled
 * the same, on the corpus and on generated requests.
 *
 * Every rule that is Python's is handed over by Python at import, never copied here: the
 * request fields connection.py watches (bind_request), and response.py's field kinds, the
 * kinds it passes through, the statuses without a body, the Server value and the Connection
 * line and keep-alive after a whole response (bind_response). Until both are bound each
 * function declines, and a field Python watches or a kind it treats specially is declined by
 * construction (bar the plain case of two watched fields: a first Host, and a Content-Length
 * of digits within max_body): a rule added in Python cannot be skipped here. What stays in
 * C is llhttp's grammar for the request line and fields (the bytes it accepts, and
 * Connection, from which it derives keep-alive), which Python does not own.
 *
 * Multi-phase init (PEP 489): all of it lives in the module's state, none in static globals
 * but the constant character tables of llhttp's grammar.
 *
 * Built as an optional extension (setup.py): when it is missing, or THREADLOOM_PURE_PYTHON=1,
 * the pure-Python path runs alone.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>
#include <time.h>

/* The request bytes llhttp's grammar accepts that the fast path accepts too (constant: each
   module_exec writes the same bytes; the response side's come from response.py instead). */
/* RFC 9110 tchar: field names. */
static unsigned char is_tchar[256];
/* Request-target bytes we accept on the fast path: RFC 3986 pchar, "/" and "?" (no "#",
   no bytes llhttp might judge differently). */
static unsigned char is_target[256];
/* Field value bytes on the request side: HTAB, SP and VCHAR (no obs-text: fall back). */
static unsigned char is_req_value[256];

static void
init_grammar(void)
{
    const char *tchar_extra = "!#$%&'*+-.^_`|~";
    const char *target_extra = "-._~!$&'()*+,;=:@%/?";
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        is_tchar[c] = alnum || (c && strchr(tchar_extra, c) != NULL);
        is_target[c] = alnum || (c && strchr(target_extra, c) != NULL);
        is_req_value[c] = c == '\t' || (c >= 0x20 && c <= 0x7e);
    }
}

static const char *const METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
                                      NULL};
#define N_METHODS 7
#define METHOD_HEAD 1

enum { R_METHOD, R_TARGET, R_PATH, R_QUERY, R_VERSION, R_HEADERS, R_KEEP_ALIVE, R_EXPECT,
       R_LENGTH, R_CHUNKED, R_UPGRADE, R_BODY, R_COUNT };
enum { B_CHUNKS, B_BUFFERED, B_RECEIVED, B_COMPLETE, B_TRUNCATED, B_COUNT };

/* A lower-case field name from one of Python's tables. */
#define NAME_MAX_LEN 40
#define MAX_NAMES 32
typedef struct {
    char text[NAME_MAX_LEN];
    Py_ssize_t len;
    int kind; /* response.py's kind code (bind_response); unused for watched names */
} Name;

#define MAX_NO_BODY 8

typedef struct {
    PyObject *method_names[N_METHODS]; /* interned str for each of METHODS */
    PyObject *version_10, *version_11;
    PyObject *a_method, *a_keep_alive, *a_http_version;

    /* bind_types: what parse_request builds */
    PyTypeObject *request_type, *body_type;
    PyObject *deque_type;
    Py_ssize_t request_offsets[R_COUNT], body_offsets[B_COUNT];

    /* bind_request (connection.py's _WATCHED): a field with one of these names is left to
       Python, but for the plain case of the two whose rule is plain (host, content-length) */
    int request_bound;
    Name watched[MAX_NAMES];
    int n_watched;

    /* bind_response (response.py) */
    int response_bound;
    unsigned char is_name[256], is_value[256]; /* _TCHAR and _VALUE_OK */
    Name kinds[MAX_NAMES];                     /* _KINDS: any other name is plain */
    int n_kinds;
    int length_kind;                           /* _LENGTH: parsed */
    unsigned long noted;                       /* 1 << kind for each of _NOTED: passed */
    unsigned long own;                         /* _DATE_OR_SERVER: render_whole declines */
    long no_body[MAX_NO_BODY];                 /* _NO_BODY_STATUS */
    int n_no_body;
    PyObject *server_line;                     /* b"Server: " + SERVER + b"\r\n" */
    PyObject *after_whole[4];                  /* _AFTER_WHOLE[2 * keep_alive + http10] */

    /* the Date line of the current second, formatted at most once a second (like dates.py's
       DateCache, which formats the same text with email.utils.formatdate); GIL held */
    char date_line[64];
    Py_ssize_t date_len;
    time_t date_second;
} speedups_state;

static inline speedups_state *
state_of(PyObject *module)
{
    return (speedups_state *)PyModule_GetState(module);
}

/* Case-insensitive compare of `name` (length n) with a lower-case literal. */
static int
name_is(const unsigned char *name, Py_ssize_t n, const char *lower)
{
    Py_ssize_t len = (Py_ssize_t)strlen(lower);
    if (n != len)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = name[i];
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

/* Parse ASCII digits (1..18 of them) into *out; 0 if anything else. */
static int
parse_length(const unsigned char *p, Py_ssize_t n, long long *out)
{
    if (n < 1 || n > 18)
        return 0;
    long long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* A new bytes object holding `name` lower-cased. Never lower-case the result of
   PyBytes_FromStringAndSize(name, 1) in place: one-byte bytes objects are shared singletons,
   and changing b"U" there changes it for the whole process. */
static PyObject *
lower_bytes(const unsigned char *name, Py_ssize_t n)
{
    if (n == 1) {
        char c = (char)name[0];
        if (c >= 'A' && c <= 'Z')
            c += 32;
        return PyBytes_FromStringAndSize(&c, 1);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    char *lower = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = (char)name[i];
        lower[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    return out;
}

/* Whether `name` (any case) is one of the names in `names`, which are lower-case. */
static int
in_names(const Name *names, int count, const unsigned char *name, Py_ssize_t n)
{
    for (int i = 0; i < count; i++) {
        if (names[i].len != n)
            continue;
        Py_ssize_t k = 0;
        for (; k < n; k++) {
            unsigned char c = name[k];
            if (c >= 'A' && c <= 'Z')
                c += 32;
            if (c != (unsigned char)names[i].text[k])
                break;
        }
        if (k == n)
            return i + 1;
    }
    return 0;
}

static int
is_watched(speedups_state *st, const unsigned char *name, Py_ssize_t n)
{
    return in_names(st->watched, st->n_watched, name, n) != 0;
}

/*
 * The request types of request.py, bound once by speedups.py (bind_types). A request is
 * built the way CPython builds any instance of a class with __slots__: allocated, then each
 * slot stored at the offset its member descriptor gives. Binding checks that every slot is
 * a plain object slot, so nothing here can write where it should not.
 */
static const char *const REQUEST_SLOTS[] = {
    "method", "target", "path", "query", "http_version", "headers", "keep_alive",
    "expect_continue", "content_length", "chunked", "upgrade", "body", NULL};
static const char *const BODY_SLOTS[] = {"chunks", "buffered", "received", "complete",
                                         "truncated", NULL};

/* The offsets of `names` in `type`, which must have exactly these slots; -1 on an error. */
static int
slot_offsets(PyTypeObject *type, const char *const *names, Py_ssize_t *offsets)
{
    PyObject *slots = PyObject_GetAttrString((PyObject *)type, "__slots__");
    if (slots == NULL)
        return -1;
    Py_ssize_t count = PyObject_Length(slots);
    Py_DECREF(slots);
    Py_ssize_t i = 0;
    for (; names[i]; i++) {
        PyObject *descr = PyObject_GetAttrString((PyObject *)type, names[i]);
        if (descr == NULL)
            return -1;
        int plain = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                    ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX &&
                    !(((PyMemberDescrObject *)descr)->d_member->flags & READONLY);
        if (plain)
            offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!plain) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a plain slot", type->tp_name, names[i]);
            return -1;
        }
    }
    if (count != i) {
        PyErr_Format(PyExc_TypeError, "%s has %zd slots, the C path knows %zd", type->tp_name,
                     count, i);
        return -1;
    }
    return 0;
}

/* bind_types(Request, RequestBody, deque): what parse_request builds. */
static PyObject *
bind_types(PyObject *module, PyObject *args)
{
    speedups_state *st = state_of(module);
    PyTypeObject *request, *body;
    PyObject *deque;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyType_Type, &request, &PyType_Type, &body, &deque))
        return NULL;
    Py_ssize_t new_request_offsets[R_COUNT], new_body_offsets[B_COUNT];
    if (slot_offsets(request, REQUEST_SLOTS, new_request_offsets) < 0 ||
        slot_offsets(body, BODY_SLOTS, new_body_offsets) < 0)
        return NULL; /* the binding in use, if any, stays as it was */
    memcpy(st->request_offsets, new_request_offsets, sizeof(st->request_offsets));
    memcpy(st->body_offsets, new_body_offsets, sizeof(st->body_offsets));
    Py_XSETREF(st->request_type, (PyTypeObject *)Py_NewRef(request));
    Py_XSETREF(st->body_type, (PyTypeObject *)Py_NewRef(body));
    Py_XSETREF(st->deque_type, Py_NewRef(deque));
    Py_RETURN_NONE;
}

/* Store a new reference to `value` (stolen when `steal`) in a fresh instance's slot. */
#define SET_SLOT(obj, offsets, slot, value) \
    (*(PyObject **)((char *)(obj) + (offsets)[slot]) = (value))

/* A Request (and its RequestBody: `body` so far, `complete` when that is all of it) as
 * request.py's classes hold one; steals the references it is given. */
static PyObject *
new_request(speedups_state *st, PyObject *method, PyObject *target, PyObject *path, PyObject *query,
            PyObject *version, PyObject *headers, int keep_alive, PyObject *length,
            PyObject *body, Py_ssize_t body_len, int complete)
{
    PyObject *chunks = body_len ? PyObject_CallFunction(st->deque_type, "((O))", body)
                                : PyObject_CallNoArgs(st->deque_type);
    PyObject *received = chunks ? PyLong_FromSsize_t(body_len) : NULL;
    PyObject *request_body = received ? st->body_type->tp_alloc(st->body_type, 0) : NULL;
    PyObject *request = request_body ? st->request_type->tp_alloc(st->request_type, 0) : NULL;
    Py_DECREF(body);
    if (request == NULL) {
        Py_XDECREF(chunks);
        Py_XDECREF(received);
        Py_XDECREF(request_body);
        Py_DECREF(method);
        Py_DECREF(target);
        Py_DECREF(path);
        Py_DECREF(query);
        Py_DECREF(version);
        Py_DECREF(headers);
        Py_DECREF(length);
        return NULL;
    }
    SET_SLOT(request_body, st->body_offsets, B_CHUNKS, chunks);
    SET_SLOT(request_body, st->body_offsets, B_BUFFERED, Py_NewRef(received));
    SET_SLOT(request_body, st->body_offsets, B_RECEIVED, received);
    SET_SLOT(request_body, st->body_offsets, B_COMPLETE, Py_NewRef(complete ? Py_True : Py_False));
    SET_SLOT(request_body, st->body_offsets, B_TRUNCATED, Py_NewRef(Py_False));
    SET_SLOT(request, st->request_offsets, R_METHOD, method);
    SET_SLOT(request, st->request_offsets, R_TARGET, target);
    SET_SLOT(request, st->request_offsets, R_PATH, path);
    SET_SLOT(request, st->request_offsets, R_QUERY, query);
    SET_SLOT(request, st->request_offsets, R_VERSION, version);
    SET_SLOT(request, st->request_offsets, R_HEADERS, headers);
    SET_SLOT(request, st->request_offsets, R_KEEP_ALIVE, Py_NewRef(keep_alive ? Py_True : Py_False));
    SET_SLOT(request, st->request_offsets, R_EXPECT, Py_NewRef(Py_False));
    SET_SLOT(request, st->request_offsets, R_LENGTH, length);
    SET_SLOT(request, st->request_offsets, R_CHUNKED, Py_NewRef(Py_False));
    SET_SLOT(request, st->request_offsets, R_UPGRADE, Py_NewRef(Py_None));
    SET_SLOT(request, st->request_offsets, R_BODY, request_body);
    return request;
}

/* The body bytes that came with the head. A body the read holds whole is copied out (its
 * own bytes: the app keeps it, not the whole read). The first part of a body still on its
 * way is a memoryview of the read instead: RequestBody.take joins it with the rest once, so
 * the part is copied once, not twice (each copy of a 64 KiB upload was ~7% of its request's
 * samples in perf). Only a read that is bytes is viewed: nothing can change under the view. */
static PyObject *
body_view(PyObject *read, const char *data, Py_ssize_t start, Py_ssize_t len, int complete)
{
    if (complete || len == 0 || !PyBytes_CheckExact(read))
        return PyBytes_FromStringAndSize(data + start, len);
    PyObject *whole = PyMemoryView_FromObject(read);
    if (whole == NULL)
        return NULL;
    PyObject *part = PySequence_GetSlice(whole, start, start + len);
    Py_DECREF(whole);
    return part;
}

/*
 * parse_request(data, pos, max_head, max_headers, max_body)
 *
 * One clean request whose head is complete, starting at data[pos]: (request, end), request
 * a Request of the bound type (bind_types), headers a list of (lower-cased name,
 * OWS-stripped value) in the peer's order, and end the index just after the request. Its
 * body is complete when all of it is here; else it holds what is here (end is then
 * len(data)) and connection.py counts the rest of the Content-Length (no grammar left to
 * check in it). None for anything else (see the top of this file), and always None before
 * bind_types.
 */
static PyObject *
parse_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    speedups_state *st = state_of(module);
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "parse_request takes 5 arguments");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]), max_head = PyLong_AsSsize_t(args[2]);
    Py_ssize_t max_headers = PyLong_AsSsize_t(args[3]);
    long long max_body = PyLong_AsLongLong(args[4]);
    Py_buffer buf;
    if (PyErr_Occurred() || PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *data = (const unsigned char *)buf.buf;
    Py_ssize_t size = buf.len;
    PyObject *result = NULL, *headers = NULL;
    if (st->request_type == NULL || !st->request_bound || pos < 0 || pos >= size)
        goto fallback;
    const unsigned char *p = data + pos;
    const unsigned char *end = data + (size - pos > max_head ? pos + max_head : size);

    /* request-line: METHOD SP origin-form SP HTTP/1.x CRLF */
    int method = -1;
    for (int m = 0; METHODS[m]; m++) {
        size_t n = strlen(METHODS[m]);
        if ((size_t)(end - p) > n && memcmp(p, METHODS[m], n) == 0 && p[n] == ' ') {
            method = m;
            p += n + 1;
            break;
        }
    }
    if (method < 0 || p >= end || *p != '/')
        goto fallback;
    const unsigned char *target = p, *question = NULL;
    while (p < end && is_target[*p]) {
        if (*p == '?' && question == NULL)
            question = p;
        p++;
    }
    Py_ssize_t target_len = p - target;
    if (end - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 || (p[8] != '0' && p[8] != '1') ||
        p[9] != '\r' || p[10] != '\n')
        goto fallback;
    int v11 = p[8] == '1';
    p += 11;

    /* header fields, counted as connection.py's on_header counts them */
    headers = PyList_New(0);
    if (headers == NULL)
        goto error;
    Py_ssize_t counted = target_len;
    int host_seen = 0, close = 0, keep_alive_token = 0, connection_seen = 0;
    long long content_length = -1;
    for (;;) {
        if (end - p < 2)
            goto fallback;
        if (p[0] == '\r') {
            if (p[1] != '\n')
                goto fallback;
            p += 2;
            break;
        }
        const unsigned char *name = p;
        while (p < end && is_tchar[*p])
            p++;
        Py_ssize_t name_len = p - name;
        if (name_len == 0 || p >= end || *p != ':')
            goto fallback; /* obs-fold, space before the colon, a bad name: Python decides */
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const unsigned char *value = p;
        while (p < end && is_req_value[*p])
            p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            goto fallback;
        const unsigned char *value_end = p;
        while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
            value_end--;
        Py_ssize_t value_len = value_end - value;
        p += 2;
        counted += name_len + value_len + 4;
        if (counted > max_head || PyList_GET_SIZE(headers) >= max_headers)
            goto fallback;

        /* A field connection.py watches goes to the Python path, but for the plain case of
           Host (the first) and Content-Length (checked below); any other watched name
           (framing, 100-continue, upgrades, whatever Python watches next) declines. */
        int watched = is_watched(st, name, name_len);
        if (watched && !name_is(name, name_len, "host") &&
            !name_is(name, name_len, "content-length"))
            goto fallback;
        if (watched && name_is(name, name_len, "host")) {
            if (host_seen)
                goto fallback;
            host_seen = 1;
        }
        else if (name_is(name, name_len, "connection")) { /* llhttp's keep-alive, not Python's */
            if (connection_seen)
                goto fallback;
            connection_seen = 1;
            if (name_is(value, value_len, "close"))
                close = 1;
            else if (name_is(value, value_len, "keep-alive"))
                keep_alive_token = 1;
            else
                goto fallback;
        }
        else if (watched) { /* content-length */
            if (content_length >= 0 || !parse_length(value, value_len, &content_length) ||
                content_length > max_body)
                goto fallback;
        }

        PyObject *pname = lower_bytes(name, name_len);
        if (pname == NULL)
            goto error;
        PyObject *pvalue = PyBytes_FromStringAndSize((const char *)value, value_len);
        if (pvalue == NULL) {
            Py_DECREF(pname);
            goto error;
        }
        PyObject *pair = PyTuple_Pack(2, pname, pvalue);
        Py_DECREF(pname);
        Py_DECREF(pvalue);
        if (pair == NULL)
            goto error;
        int failed = PyList_Append(headers, pair);
        Py_DECREF(pair);
        if (failed)
            goto error;
    }
    if (v11 && !host_seen)
        goto fallback; /* a 400, said by the Python path */

    Py_ssize_t body_start = p - data;
    Py_ssize_t body_len = content_length > 0 ? (Py_ssize_t)content_length : 0;
    int complete = size - body_start >= body_len;
    if (!complete)
        body_len = size - body_start; /* the rest is counted by connection.py */
    int keep_alive = v11 ? !close : (keep_alive_token && !close);

    PyObject *path_query[2];
    PyObject *target_obj = PyBytes_FromStringAndSize((const char *)target, target_len);
    if (question) {
        path_query[0] = PyBytes_FromStringAndSize((const char *)target, question - target);
        path_query[1] = PyBytes_FromStringAndSize((const char *)question + 1,
                                                  target + target_len - question - 1);
    }
    else { /* as bytes.partition gives it: the target itself, and b"" */
        path_query[0] = Py_XNewRef(target_obj);
        path_query[1] = PyBytes_FromStringAndSize(NULL, 0);
    }
    PyObject *body = body_view(args[0], (const char *)data, body_start, body_len, complete);
    PyObject *length = content_length >= 0 ? PyLong_FromLongLong(content_length) : Py_NewRef(Py_None);
    if (path_query[0] && path_query[1] && target_obj && body && length) {
        PyObject *request = new_request(
            st, Py_NewRef(st->method_names[method]), target_obj, path_query[0], path_query[1],
            Py_NewRef(v11 ? st->version_11 : st->version_10), headers, keep_alive, length, body,
            body_len, complete);
        result = request ? Py_BuildValue("(Nn)", request, body_start + body_len) : NULL;
    }
    else {
        Py_XDECREF(path_query[0]);
        Py_XDECREF(path_query[1]);
        Py_XDECREF(target_obj);
        Py_XDECREF(body);
        Py_XDECREF(length);
        Py_DECREF(headers);
    }
    PyBuffer_Release(&buf);
    return result;

fallback:
    Py_XDECREF(headers);
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
error:
    Py_XDECREF(headers);
    PyBuffer_Release(&buf);
    return NULL;
}

/* The bytes of a bytes field, or of a str field whose characters are all below 256 (its
 * latin-1 encoding, read in place); 0 to decline anything else. Borrowed: the caller's
 * header list keeps them alive, and no Python code runs while they are used. */
static int
field_text(PyObject *obj, const unsigned char **text, Py_ssize_t *len)
{
    if (PyBytes_CheckExact(obj)) {
        *text = (const unsigned char *)PyBytes_AS_STRING(obj);
        *len = PyBytes_GET_SIZE(obj);
        return 1;
    }
    if (PyUnicode_CheckExact(obj) && PyUnicode_IS_READY(obj) &&
        PyUnicode_KIND(obj) == PyUnicode_1BYTE_KIND) {
        *text = PyUnicode_1BYTE_DATA(obj);
        *len = PyUnicode_GET_LENGTH(obj);
        return 1;
    }
    return 0;
}

/* The checked fields of one response, before they are joined. */
#define MAX_FIELDS 64
typedef struct {
    const unsigned char *names[MAX_FIELDS], *values[MAX_FIELDS]; /* borrowed (field_text) */
    Py_ssize_t name_lens[MAX_FIELDS];
    Py_ssize_t starts[MAX_FIELDS], lens[MAX_FIELDS];   /* the value without OWS */
    Py_ssize_t count, total;                           /* fields, bytes once joined */
    long long length;                                  /* Content-Length, -1 if none */
    long seen;                                         /* 1 << kind, as _scan_headers */
} Fields;

/*
 * Check a list or tuple of (name, value) pairs of str or bytes as response.py's
 * _header_line and _scan_headers do, with response.py's tables (bind_response): 1 when
 * every field is plain, 0 to decline: anything else, every invalid field included, and a
 * field of any kind but the length and the kinds _scan_headers passes through (_NOTED).
 * Never raises.
 */
static int
collect_fields(speedups_state *st, PyObject *headers, Fields *f)
{
    f->count = f->total = 0;
    f->length = -1;
    f->seen = 0;
    if (!st->response_bound || (!PyList_CheckExact(headers) && !PyTuple_CheckExact(headers)))
        return 0;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(headers);
    PyObject **items = PySequence_Fast_ITEMS(headers);
    if (count > MAX_FIELDS)
        return 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = items[i];
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
            return 0;
        const unsigned char *n, *v;
        Py_ssize_t nlen, vlen;
        if (!field_text(PyTuple_GET_ITEM(pair, 0), &n, &nlen) ||
            !field_text(PyTuple_GET_ITEM(pair, 1), &v, &vlen))
            return 0;
        f->names[i] = n;
        f->values[i] = v;
        f->name_lens[i] = nlen;
        f->count = i + 1;
        if (nlen == 0)
            return 0;
        for (Py_ssize_t k = 0; k < nlen; k++) {
            if (!st->is_name[n[k]])
                return 0;
        }
        for (Py_ssize_t k = 0; k < vlen; k++) {
            if (!st->is_value[v[k]])
                return 0;
        }
        Py_ssize_t start = 0;
        while (start < vlen && (v[start] == ' ' || v[start] == '\t'))
            start++;
        while (vlen > start && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        f->starts[i] = start;
        f->lens[i] = vlen - start;
        int found = in_names(st->kinds, st->n_kinds, n, nlen);
        if (found) {
            int kind = st->kinds[found - 1].kind;
            if (kind == st->length_kind) {
                if (f->length >= 0 || !parse_length(v + start, vlen - start, &f->length))
                    return 0;
            }
            else if (!(st->noted & (1UL << kind)))
                return 0; /* Connection, Transfer-Encoding, any kind Python decides itself */
            f->seen |= 1L << kind;
        }
        f->total += nlen + 2 + f->lens[i] + 2;
    }
    return 1;
}

/* Write the joined "name: value\r\n" lines at out; returns the end. */
static char *
write_fields(const Fields *f, char *out)
{
    for (Py_ssize_t i = 0; i < f->count; i++) {
        memcpy(out, f->names[i], f->name_lens[i]);
        out += f->name_lens[i];
        *out++ = ':';
        *out++ = ' ';
        memcpy(out, f->values[i] + f->starts[i], f->lens[i]);
        out += f->lens[i];
        *out++ = '\r';
        *out++ = '\n';
    }
    return out;
}

/*
 * scan_headers(headers)
 *
 * response.py's _scan_headers for plain fields: (joined "name: value\r\n" lines, the
 * Content-Length or None, the seen bits). None to decline (see collect_fields).
 */
static PyObject *
scan_headers(PyObject *module, PyObject *headers)
{
    Fields f;
    if (!collect_fields(state_of(module), headers, &f))
        Py_RETURN_NONE;
    PyObject *result = NULL;
    PyObject *joined = PyBytes_FromStringAndSize(NULL, f.total);
    if (joined != NULL) {
        write_fields(&f, PyBytes_AS_STRING(joined));
        if (f.length >= 0)
            result = Py_BuildValue("(NLl)", joined, f.length, f.seen);
        else
            result = Py_BuildValue("(NOl)", joined, Py_None, f.seen);
    }
    return result;
}

static const char *const WEEKDAYS[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* "Date: <IMF-fixdate>\r\n" for `second` into the state's date_line; 0 if the clock makes
   no sense. */
static int
format_date(speedups_state *st, time_t second)
{
    struct tm tm;
    if (gmtime_r(&second, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
        return 0;
    int n = snprintf(st->date_line, sizeof(st->date_line),
                     "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", WEEKDAYS[tm.tm_wday],
                     tm.tm_mday, MONTHS[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                     tm.tm_sec);
    if (n <= 0 || n >= (int)sizeof(st->date_line))
        return 0;
    st->date_len = n;
    st->date_second = second;
    return 1;
}

/* http_date(second) -> the IMF-fixdate text of dates.py, for the tests. */
static PyObject *
http_date(PyObject *module, PyObject *arg)
{
    speedups_state *st = state_of(module);
    long long second = PyLong_AsLongLong(arg);
    if (second == -1 && PyErr_Occurred())
        return NULL;
    if (!format_date(st, (time_t)second))
        Py_RETURN_NONE;
    PyObject *text = PyBytes_FromStringAndSize(st->date_line + 6, st->date_len - 8);
    st->date_second = -1; /* the next response formats the current second again */
    return text;
}

/* response.py's (Connection line, keep-alive after) for this request, from _AFTER_WHOLE;
   NULL to decline (a keep_alive that is not a bool, a version that is not a str). A new
   reference: the table may be bound again while it is used. */
static PyObject *
after_whole(speedups_state *st, PyObject *request)
{
    PyObject *keep_alive = PyObject_GetAttr(request, st->a_keep_alive);
    PyObject *version = keep_alive ? PyObject_GetAttr(request, st->a_http_version) : NULL;
    PyObject *entry = NULL;
    if (version != NULL && (keep_alive == Py_True || keep_alive == Py_False) &&
        PyUnicode_Check(version)) {
        int http10 = version == st->version_10 ||
                     PyUnicode_CompareWithASCIIString(version, "1.0") == 0;
        entry = Py_NewRef(st->after_whole[2 * (keep_alive == Py_True) + http10]);
    }
    Py_XDECREF(keep_alive);
    Py_XDECREF(version);
    PyErr_Clear();
    return entry;
}

/* render_whole's work once the request is known to be a plain one; None to decline. */
static PyObject *
render(speedups_state *st, PyObject *status_line, PyObject *headers, PyObject *body,
       PyObject *after)
{
    struct timespec clock; /* the clock time.time() reads (time(2) may lag it by a tick) */
    if (clock_gettime(CLOCK_REALTIME, &clock) != 0)
        Py_RETURN_NONE;
    time_t now = clock.tv_sec;
    if (now != st->date_second && !format_date(st, now))
        Py_RETURN_NONE;
    Fields f;
    if (!collect_fields(st, headers, &f))
        Py_RETURN_NONE;
    Py_ssize_t body_len = PyBytes_GET_SIZE(body);
    char length_line[48];
    int length_len = 0;
    if ((f.seen & st->own) || (f.length >= 0 && f.length != (long long)body_len))
        Py_RETURN_NONE;
    if (f.length < 0)
        length_len = snprintf(length_line, sizeof(length_line), "Content-Length: %zd\r\n",
                              body_len);
    PyObject *connection = PyTuple_GET_ITEM(after, 0);
    Py_ssize_t connection_len = PyBytes_GET_SIZE(connection);
    Py_ssize_t server_len = PyBytes_GET_SIZE(st->server_line);
    Py_ssize_t size = PyBytes_GET_SIZE(status_line) + f.total + length_len + st->date_len +
                      server_len + connection_len + 2 + body_len;
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(data);
    memcpy(out, PyBytes_AS_STRING(status_line), PyBytes_GET_SIZE(status_line));
    out += PyBytes_GET_SIZE(status_line);
    out = write_fields(&f, out);
    memcpy(out, length_line, length_len);
    out += length_len;
    memcpy(out, st->date_line, st->date_len);
    out += st->date_len;
    memcpy(out, PyBytes_AS_STRING(st->server_line), server_len);
    out += server_len;
    memcpy(out, PyBytes_AS_STRING(connection), connection_len);
    out += connection_len;
    *out++ = '\r';
    *out++ = '\n';
    memcpy(out, PyBytes_AS_STRING(body), body_len);
    PyObject *result = PyTuple_Pack(2, data, PyTuple_GET_ITEM(after, 1)); /* (data, keep) */
    Py_DECREF(data);
    return result;
}

/*
 * render_whole(request, status, status_line, headers, body)
 *
 * A whole response with a body known in full, as response.py's full_response builds it in
 * the common case, and whether the connection is kept after it: (data, keep_alive). data is
 * status_line, the app's plain fields, "Content-Length: len(body)" unless the app gave one
 * (which must then equal it), the Date, Server and Connection lines, the blank line, then
 * body. None to decline: a body that is not bytes, a 1xx or a status without a body, a HEAD
 * request, anything collect_fields declines, a field whose kind _finish_head watches (Date,
 * Server), or a Content-Length that differs from the body's.
 */
static PyObject *
render_whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    speedups_state *st = state_of(module);
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "render_whole takes 5 arguments");
        return NULL;
    }
    PyObject *request = args[0], *status_line = args[2], *headers = args[3], *body = args[4];
    long status = PyLong_Check(args[1]) ? PyLong_AsLong(args[1]) : -1;
    if (status == -1 && PyErr_Occurred())
        PyErr_Clear();
    if (!st->response_bound || status < 200 || !PyBytes_CheckExact(status_line) ||
        !PyBytes_CheckExact(body))
        Py_RETURN_NONE;
    for (int i = 0; i < st->n_no_body; i++) {
        if (status == st->no_body[i])
            Py_RETURN_NONE;
    }
    PyObject *method = PyObject_GetAttr(request, st->a_method);
    if (method == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    int head = method == st->method_names[METHOD_HEAD] || !PyUnicode_Check(method) ||
               PyUnicode_CompareWithASCIIString(method, "HEAD") == 0;
    Py_DECREF(method);
    PyObject *after = head ? NULL : after_whole(st, request);
    if (after == NULL)
        Py_RETURN_NONE;
    PyObject *result = render(st, status_line, headers, body, after);
    Py_DECREF(after);
    return result;
}

/* -- the tables Python hands over ---------------------------------------------------------- */

/* Copy a lower-case bytes name into `out`; -1 (ValueError/TypeError) for anything else. */
static int
take_name(PyObject *name, Name *out)
{
    if (!PyBytes_Check(name)) {
        PyErr_Format(PyExc_TypeError, "a field name must be bytes, not %.100s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(name);
    const char *text = PyBytes_AS_STRING(name);
    if (n == 0 || n >= NAME_MAX_LEN) {
        PyErr_Format(PyExc_ValueError, "field name %R: 1 to %d bytes", name, NAME_MAX_LEN - 1);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (!is_tchar[c] || (c >= 'A' && c <= 'Z')) {
            PyErr_Format(PyExc_ValueError, "field name %R is not a lower-case token", name);
            return -1;
        }
    }
    memcpy(out->text, text, n);
    out->len = n;
    out->kind = 0;
    return 0;
}

/* bind_request(watched): connection.py's _WATCHED, the names whose fields Python checks. */
static PyObject *
bind_request(PyObject *module, PyObject *watched)
{
    speedups_state *st = state_of(module);
    Name names[MAX_NAMES];
    int count = 0;
    PyObject *iterator = PyObject_GetIter(watched);
    if (iterator == NULL)
        return NULL;
    PyObject *name;
    while ((name = PyIter_Next(iterator)) != NULL) {
        int failed = count == MAX_NAMES || take_name(name, &names[count]) < 0;
        if (count == MAX_NAMES)
            PyErr_Format(PyExc_ValueError, "more than %d watched names", MAX_NAMES);
        Py_DECREF(name);
        if (failed)
            break;
        count++;
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred())
        return NULL; /* the binding in use, if any, stays as it was */
    memcpy(st->watched, names, sizeof(names));
    st->n_watched = count;
    st->request_bound = 1;
    Py_RETURN_NONE;
}

/* A kind code that fits the seen bits (0 < kind < the bits of a long). */
static int
take_kind(PyObject *obj, int *kind)
{
    long value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (value <= 0 || value >= (long)(8 * sizeof(long) - 1)) {
        PyErr_Format(PyExc_ValueError, "field kind %ld out of range", value);
        return -1;
    }
    *kind = (int)value;
    return 0;
}

/* The bits 1 << kind of an iterable of kinds into *bits. */
static int
take_kinds(PyObject *kinds, unsigned long *bits)
{
    PyObject *iterator = PyObject_GetIter(kinds);
    if (iterator == NULL)
        return -1;
    PyObject *item;
    *bits = 0;
    while ((item = PyIter_Next(iterator)) != NULL) {
        int kind;
        int failed = take_kind(item, &kind) < 0;
        Py_DECREF(item);
        if (failed)
            break;
        *bits |= 1UL << kind;
    }
    Py_DECREF(iterator);
    return PyErr_Occurred() ? -1 : 0;
}

/* A byte table from the bytes it allows. */
static int
take_bytes_table(PyObject *allowed, unsigned char *table)
{
    if (!PyBytes_Check(allowed)) {
        PyErr_SetString(PyExc_TypeError, "a byte table must be bytes");
        return -1;
    }
    memset(table, 0, 256);
    for (Py_ssize_t i = 0; i < PyBytes_GET_SIZE(allowed); i++)
        table[(unsigned char)PyBytes_AS_STRING(allowed)[i]] = 1;
    return 0;
}

/*
 * bind_response(tchar=, value_ok=, kinds=, length=, noted=, own=, no_body=, server=,
 *               after_whole=): response.py's tables (see response.py for each).
 */
static PyObject *
bind_response(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"tchar", "value_ok", "kinds", "length", "noted", "own",
                               "no_body", "server", "after_whole", NULL};
    PyObject *tchar, *value_ok, *kinds, *length, *noted, *own, *no_body, *server, *after;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "SSO!OOOOSO!:bind_response", keywords,
                                     &tchar, &value_ok, &PyDict_Type, &kinds, &length, &noted,
                                     &own, &no_body, &server, &PyTuple_Type, &after))
        return NULL;
    speedups_state *st = state_of(module);
    speedups_state next; /* filled whole, then copied: a failure leaves the binding in use */
    memset(&next, 0, sizeof(next));
    if (take_bytes_table(tchar, next.is_name) < 0 || take_bytes_table(value_ok, next.is_value) < 0)
        return NULL;
    for (int c = 0; c < 256; c++) {
        if (c == '\r' || c == '\n' || (c < 0x20 && c != '\t') || c == 0x7f)
            next.is_value[c] = 0; /* never, whatever the table says */
        if (!is_tchar[c])
            next.is_name[c] = 0;
    }
    PyObject *name, *kind;
    Py_ssize_t pos = 0;
    while (PyDict_Next(kinds, &pos, &name, &kind)) {
        if (next.n_kinds == MAX_NAMES) {
            PyErr_Format(PyExc_ValueError, "more than %d field kinds", MAX_NAMES);
            return NULL;
        }
        Name *entry = &next.kinds[next.n_kinds];
        if (take_name(name, entry) < 0 || take_kind(kind, &entry->kind) < 0)
            return NULL;
        next.n_kinds++;
    }
    unsigned long own_bits = PyLong_AsUnsignedLong(own);
    if ((own_bits == (unsigned long)-1 && PyErr_Occurred()) ||
        take_kind(length, &next.length_kind) < 0 || take_kinds(noted, &next.noted) < 0)
        return NULL;
    if (next.noted & (1UL << next.length_kind)) {
        PyErr_SetString(PyExc_ValueError, "the length kind is not a noted kind");
        return NULL;
    }
    PyObject *iterator = PyObject_GetIter(no_body);
    if (iterator == NULL)
        return NULL;
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        long status = PyLong_AsLong(item);
        Py_DECREF(item);
        if (status == -1 && PyErr_Occurred())
            break;
        if (next.n_no_body == MAX_NO_BODY) {
            PyErr_Format(PyExc_ValueError, "more than %d statuses without a body", MAX_NO_BODY);
            break;
        }
        next.no_body[next.n_no_body++] = status;
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred())
        return NULL;
    if (PyTuple_GET_SIZE(after) != 4) {
        PyErr_SetString(PyExc_ValueError, "after_whole: 4 (line, keep_alive) pairs");
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        PyObject *entry = PyTuple_GET_ITEM(after, i);
        if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2 ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(entry, 0)) ||
            !PyBool_Check(PyTuple_GET_ITEM(entry, 1))) {
            PyErr_SetString(PyExc_TypeError, "after_whole: 4 (line: bytes, keep_alive: bool)");
            return NULL;
        }
    }
    const char *text = PyBytes_AS_STRING(server);
    for (Py_ssize_t i = 0; i < PyBytes_GET_SIZE(server); i++) {
        if (!next.is_value[(unsigned char)text[i]]) {
            PyErr_SetString(PyExc_ValueError, "the Server value is not a field value");
            return NULL;
        }
    }
    PyObject *server_line = PyBytes_FromFormat("Server: %s\r\n", text);
    if (server_line == NULL)
        return NULL;
    memcpy(st->is_name, next.is_name, sizeof(st->is_name));
    memcpy(st->is_value, next.is_value, sizeof(st->is_value));
    memcpy(st->kinds, next.kinds, sizeof(st->kinds));
    st->n_kinds = next.n_kinds;
    st->length_kind = next.length_kind;
    st->noted = next.noted;
    st->own = own_bits;
    memcpy(st->no_body, next.no_body, sizeof(st->no_body));
    st->n_no_body = next.n_no_body;
    Py_XSETREF(st->server_line, server_line);
    for (int i = 0; i < 4; i++)
        Py_XSETREF(st->after_whole[i], Py_NewRef(PyTuple_GET_ITEM(after, i)));
    st->response_bound = 1;
    Py_RETURN_NONE;
}

/* tables() -> what C holds, rebuilt from its own copies (for the tests: each must equal the
   Python table it came from). */
static PyObject *
tables(PyObject *module, PyObject *unused)
{
    speedups_state *st = state_of(module);
    PyObject *watched = PySet_New(NULL), *kinds = PyDict_New(), *noted = PySet_New(NULL);
    PyObject *no_body = PySet_New(NULL), *after = PyTuple_New(4), *result = NULL;
    if (!watched || !kinds || !noted || !no_body || !after)
        goto done;
    for (int i = 0; i < st->n_watched; i++) {
        PyObject *name = PyBytes_FromStringAndSize(st->watched[i].text, st->watched[i].len);
        if (name == NULL || PySet_Add(watched, name) < 0) {
            Py_XDECREF(name);
            goto done;
        }
        Py_DECREF(name);
    }
    for (int i = 0; i < st->n_kinds; i++) {
        PyObject *name = PyBytes_FromStringAndSize(st->kinds[i].text, st->kinds[i].len);
        PyObject *kind = name ? PyLong_FromLong(st->kinds[i].kind) : NULL;
        int failed = kind == NULL || PyDict_SetItem(kinds, name, kind) < 0;
        Py_XDECREF(name);
        Py_XDECREF(kind);
        if (failed)
            goto done;
    }
    for (int kind = 0; kind < (int)(8 * sizeof(long)); kind++) {
        if (!(st->noted & (1UL << kind)))
            continue;
        PyObject *value = PyLong_FromLong(kind);
        if (value == NULL || PySet_Add(noted, value) < 0) {
            Py_XDECREF(value);
            goto done;
        }
        Py_DECREF(value);
    }
    for (int i = 0; i < st->n_no_body; i++) {
        PyObject *value = PyLong_FromLong(st->no_body[i]);
        if (value == NULL || PySet_Add(no_body, value) < 0) {
            Py_XDECREF(value);
            goto done;
        }
        Py_DECREF(value);
    }
    for (int i = 0; i < 4; i++)
        PyTuple_SET_ITEM(after, i, Py_NewRef(st->after_whole[i] ? st->after_whole[i] : Py_None));
    char allowed[2][256];
    Py_ssize_t counts[2] = {0, 0};
    for (int c = 0; c < 256; c++) {
        if (st->is_name[c])
            allowed[0][counts[0]++] = (char)c;
        if (st->is_value[c])
            allowed[1][counts[1]++] = (char)c;
    }
    PyObject *tchar = PyBytes_FromStringAndSize(allowed[0], counts[0]);
    PyObject *value_ok = tchar ? PyBytes_FromStringAndSize(allowed[1], counts[1]) : NULL;
    if (value_ok != NULL)
        result = Py_BuildValue(
            "{sOsOsisOslsOsOsNsNsOsisi}", "watched", watched, "kinds", kinds, "length",
            st->length_kind, "noted", noted, "own", (long)st->own, "no_body", no_body,
            "after_whole", after, "tchar", tchar, "value_ok", value_ok, "server_line",
            st->server_line ? st->server_line : Py_None, "request_bound", st->request_bound,
            "response_bound", st->response_bound);
    else
        Py_XDECREF(tchar);
done:
    Py_XDECREF(watched);
    Py_XDECREF(kinds);
    Py_XDECREF(noted);
    Py_XDECREF(no_body);
    Py_XDECREF(after);
    return result;
}

static PyMethodDef methods[] = {
    {"bind_types", bind_types, METH_VARARGS,
     "Bind the Request, RequestBody and deque types that parse_request builds."},
    {"bind_request", bind_request, METH_O,
     "Bind connection.py's watched field names: parse_request leaves those fields to Python."},
    {"bind_response", (PyCFunction)(void (*)(void))bind_response, METH_VARARGS | METH_KEYWORDS,
     "Bind response.py's tables: field kinds, Server value, Connection line and keep-alive."},
    {"tables", tables, METH_NOARGS, "The tables bound, as C holds them (for the tests)."},
    {"parse_request", (PyCFunction)(void (*)(void))parse_request, METH_FASTCALL,
     "One clean, complete request at data[pos] as a tuple, or None (the Python path decides)."},
    {"scan_headers", scan_headers, METH_O,
     "Response fields checked and joined, or None (the Python path decides)."},
    {"render_whole", (PyCFunction)(void (*)(void))render_whole, METH_FASTCALL,
     "A whole response and keep-alive after it, or None (the Python path decides)."},
    {"http_date", http_date, METH_O, "The IMF-fixdate of a second, as the Date line has it."},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *module)
{
    speedups_state *st = state_of(module);
    init_grammar(); /* constant: the same bytes each time */
    st->date_second = -1;
    for (int m = 0; m < N_METHODS; m++) {
        st->method_names[m] = PyUnicode_InternFromString(METHODS[m]);
        if (st->method_names[m] == NULL)
            return -1;
    }
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&st->version_10, "1.0"},     {&st->version_11, "1.1"},
        {&st->a_method, "method"},    {&st->a_keep_alive, "keep_alive"},
        {&st->a_http_version, "http_version"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL)
            return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    speedups_state *st = state_of(module);
    Py_VISIT(st->request_type);
    Py_VISIT(st->body_type);
    Py_VISIT(st->deque_type);
    for (int i = 0; i < 4; i++)
        Py_VISIT(st->after_whole[i]);
    return 0;
}

static int
module_clear(PyObject *module)
{
    speedups_state *st = state_of(module);
    for (int m = 0; m < N_METHODS; m++)
        Py_CLEAR(st->method_names[m]);
    Py_CLEAR(st->version_10);
    Py_CLEAR(st->version_11);
    Py_CLEAR(st->a_method);
    Py_CLEAR(st->a_keep_alive);
    Py_CLEAR(st->a_http_version);
    Py_CLEAR(st->request_type);
    Py_CLEAR(st->body_type);
    Py_CLEAR(st->deque_type);
    Py_CLEAR(st->server_line);
    for (int i = 0; i < 4; i++)
        Py_CLEAR(st->after_whole[i]);
    st->request_bound = st->response_bound = 0;
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "threadloom.protocols.http1._speedups",
    .m_doc = "The HTTP/1.1 hot path's common case in C (see _speedups.c).",
    .m_size = sizeof(speedups_state),
    .m_methods = methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&module_def);
}
