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
 * Built as an optional extension (setup.py): when it is missing, or THREADLOOM_PURE_PYTHON=1,
 * the pure-Python path runs alone.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>
#include <time.h>

/* RFC 9110 tchar: field names and methods. */
static unsigned char is_tchar[256];
/* Request-target bytes we accept on the fast path: RFC 3986 pchar, "/" and "?" (no "#",
   no bytes llhttp might judge differently). */
static unsigned char is_target[256];
/* Field value bytes on the request side: HTAB, SP and VCHAR (no obs-text: fall back). */
static unsigned char is_req_value[256];
/* Field value bytes the response side allows (as response.py's _VALUE_OK): HTAB, SP,
   VCHAR and obs-text; never CR, LF, NUL, other controls or DEL. */
static unsigned char is_resp_value[256];

static void
init_tables(void)
{
    const char *tchar_extra = "!#$%&'*+-.^_`|~";
    const char *target_extra = "-._~!$&'()*+,;=:@%/?";
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        is_tchar[c] = alnum || (c && strchr(tchar_extra, c) != NULL);
        is_target[c] = alnum || (c && strchr(target_extra, c) != NULL);
        is_req_value[c] = c == '\t' || (c >= 0x20 && c <= 0x7e);
        is_resp_value[c] = c == '\t' || (c >= 0x20 && c != 0x7f);
    }
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

static const char *const METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
                                      NULL};
static PyObject *method_names[8]; /* interned str for each of METHODS */
static PyObject *version_10, *version_11;

/*
 * The request types of request.py, bound once by speedups.py (bind_types). A request is
 * built the way CPython builds any instance of a class with __slots__: allocated, then each
 * slot stored at the offset its member descriptor gives. Binding checks that every slot is
 * a plain object slot, so nothing here can write where it should not.
 */
enum { R_METHOD, R_TARGET, R_PATH, R_QUERY, R_VERSION, R_HEADERS, R_KEEP_ALIVE, R_EXPECT,
       R_LENGTH, R_CHUNKED, R_UPGRADE, R_BODY, R_COUNT };
static const char *const REQUEST_SLOTS[] = {
    "method", "target", "path", "query", "http_version", "headers", "keep_alive",
    "expect_continue", "content_length", "chunked", "upgrade", "body", NULL};
enum { B_CHUNKS, B_BUFFERED, B_RECEIVED, B_COMPLETE, B_TRUNCATED, B_COUNT };
static const char *const BODY_SLOTS[] = {"chunks", "buffered", "received", "complete",
                                         "truncated", NULL};
static PyTypeObject *request_type, *body_type;
static PyObject *deque_type;
static Py_ssize_t request_offsets[R_COUNT], body_offsets[B_COUNT];

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
bind_types(PyObject *self, PyObject *args)
{
    PyTypeObject *request, *body;
    PyObject *deque;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyType_Type, &request, &PyType_Type, &body, &deque))
        return NULL;
    Py_ssize_t new_request_offsets[R_COUNT], new_body_offsets[B_COUNT];
    if (slot_offsets(request, REQUEST_SLOTS, new_request_offsets) < 0 ||
        slot_offsets(body, BODY_SLOTS, new_body_offsets) < 0)
        return NULL; /* the binding in use, if any, stays as it was */
    memcpy(request_offsets, new_request_offsets, sizeof(request_offsets));
    memcpy(body_offsets, new_body_offsets, sizeof(body_offsets));
    Py_XSETREF(request_type, (PyTypeObject *)Py_NewRef(request));
    Py_XSETREF(body_type, (PyTypeObject *)Py_NewRef(body));
    Py_XSETREF(deque_type, Py_NewRef(deque));
    Py_RETURN_NONE;
}

/* Store a new reference to `value` (stolen when `steal`) in a fresh instance's slot. */
#define SET_SLOT(obj, offsets, slot, value) \
    (*(PyObject **)((char *)(obj) + (offsets)[slot]) = (value))

/* A Request (and its complete RequestBody) as request.py's classes hold one; steals the
 * references it is given. */
static PyObject *
new_request(PyObject *method, PyObject *target, PyObject *path, PyObject *query,
            PyObject *version, PyObject *headers, int keep_alive, PyObject *length,
            PyObject *body)
{
    PyObject *chunks = PyBytes_GET_SIZE(body) ? PyObject_CallFunction(deque_type, "((O))", body)
                                              : PyObject_CallNoArgs(deque_type);
    PyObject *received = chunks ? PyLong_FromSsize_t(PyBytes_GET_SIZE(body)) : NULL;
    PyObject *request_body = received ? body_type->tp_alloc(body_type, 0) : NULL;
    PyObject *request = request_body ? request_type->tp_alloc(request_type, 0) : NULL;
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
    SET_SLOT(request_body, body_offsets, B_CHUNKS, chunks);
    SET_SLOT(request_body, body_offsets, B_BUFFERED, Py_NewRef(received));
    SET_SLOT(request_body, body_offsets, B_RECEIVED, received);
    SET_SLOT(request_body, body_offsets, B_COMPLETE, Py_NewRef(Py_True));
    SET_SLOT(request_body, body_offsets, B_TRUNCATED, Py_NewRef(Py_False));
    SET_SLOT(request, request_offsets, R_METHOD, method);
    SET_SLOT(request, request_offsets, R_TARGET, target);
    SET_SLOT(request, request_offsets, R_PATH, path);
    SET_SLOT(request, request_offsets, R_QUERY, query);
    SET_SLOT(request, request_offsets, R_VERSION, version);
    SET_SLOT(request, request_offsets, R_HEADERS, headers);
    SET_SLOT(request, request_offsets, R_KEEP_ALIVE, Py_NewRef(keep_alive ? Py_True : Py_False));
    SET_SLOT(request, request_offsets, R_EXPECT, Py_NewRef(Py_False));
    SET_SLOT(request, request_offsets, R_LENGTH, length);
    SET_SLOT(request, request_offsets, R_CHUNKED, Py_NewRef(Py_False));
    SET_SLOT(request, request_offsets, R_UPGRADE, Py_NewRef(Py_None));
    SET_SLOT(request, request_offsets, R_BODY, request_body);
    return request;
}

/*
 * parse_request(data, pos, max_head, max_headers, max_body)
 *
 * One complete, clean request starting at data[pos], with its whole body if it has one:
 * (request, end), request a Request of the bound type (bind_types) with its complete body,
 * headers a list of (lower-cased name, OWS-stripped value) in the peer's order, and end
 * the index just after the request. None for anything else (see the top of this file), and
 * always None before bind_types.
 */
static PyObject *
parse_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
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
    if (request_type == NULL || pos < 0 || pos >= size)
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

        /* what the Python path must see: framing, 100-continue, upgrades (name_is checks
           the length first, so a field of any other length costs one compare each) */
        if (name_is(name, name_len, "transfer-encoding") || name_is(name, name_len, "expect") ||
            name_is(name, name_len, "upgrade"))
            goto fallback;
        if (name_is(name, name_len, "host")) {
            if (host_seen)
                goto fallback;
            host_seen = 1;
        }
        else if (name_is(name, name_len, "connection")) {
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
        else if (name_is(name, name_len, "content-length")) {
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
    if (size - body_start < body_len)
        goto fallback; /* the body is not all here: llhttp streams it */
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
    PyObject *body = PyBytes_FromStringAndSize((const char *)data + body_start, body_len);
    PyObject *length = content_length >= 0 ? PyLong_FromLongLong(content_length) : Py_NewRef(Py_None);
    if (path_query[0] && path_query[1] && target_obj && body && length) {
        PyObject *request = new_request(
            Py_NewRef(method_names[method]), target_obj, path_query[0], path_query[1],
            Py_NewRef(v11 ? version_11 : version_10), headers, keep_alive, length, body);
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

/* The seen bits of response.py: 1 << _DATE and 1 << _SERVER. */
#define SEEN_DATE (1 << 2)
#define SEEN_SERVER (1 << 3)

/* The checked fields of one response, before they are joined. */
#define MAX_FIELDS 64
typedef struct {
    const unsigned char *names[MAX_FIELDS], *values[MAX_FIELDS]; /* borrowed (field_text) */
    Py_ssize_t name_lens[MAX_FIELDS];
    Py_ssize_t starts[MAX_FIELDS], lens[MAX_FIELDS];   /* the value without OWS */
    Py_ssize_t count, total;                           /* fields, bytes once joined */
    long long length;                                  /* Content-Length, -1 if none */
    int seen;                                          /* SEEN_DATE | SEEN_SERVER */
} Fields;

/*
 * Check a list or tuple of (name, value) pairs of str or bytes as response.py's
 * _header_line and _scan_headers do: 1 when every field is plain, 0 to decline (anything
 * else, every invalid field included, and Connection or Transfer-Encoding). Never raises.
 */
static int
collect_fields(PyObject *headers, Fields *f)
{
    f->count = f->total = 0;
    f->length = -1;
    f->seen = 0;
    if (!PyList_CheckExact(headers) && !PyTuple_CheckExact(headers))
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
            if (!is_tchar[n[k]])
                return 0;
        }
        for (Py_ssize_t k = 0; k < vlen; k++) {
            if (!is_resp_value[v[k]])
                return 0;
        }
        Py_ssize_t start = 0;
        while (start < vlen && (v[start] == ' ' || v[start] == '\t'))
            start++;
        while (vlen > start && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        f->starts[i] = start;
        f->lens[i] = vlen - start;
        if (name_is(n, nlen, "content-length")) {
            if (f->length >= 0 || !parse_length(v + start, vlen - start, &f->length))
                return 0;
        }
        else if (name_is(n, nlen, "date"))
            f->seen |= SEEN_DATE;
        else if (name_is(n, nlen, "server"))
            f->seen |= SEEN_SERVER;
        else if (name_is(n, nlen, "connection") || name_is(n, nlen, "transfer-encoding"))
            return 0;
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
scan_headers(PyObject *self, PyObject *headers)
{
    Fields f;
    if (!collect_fields(headers, &f))
        Py_RETURN_NONE;
    PyObject *result = NULL;
    PyObject *joined = PyBytes_FromStringAndSize(NULL, f.total);
    if (joined != NULL) {
        write_fields(&f, PyBytes_AS_STRING(joined));
        if (f.length >= 0)
            result = Py_BuildValue("(NLi)", joined, f.length, f.seen);
        else
            result = Py_BuildValue("(NOi)", joined, Py_None, f.seen);
    }
    return result;
}

/* The Date line of the current second, formatted at most once a second (like dates.py's
 * DateCache, which formats the same text with email.utils.formatdate). Only touched with
 * the GIL held. */
static char date_line[64];
static Py_ssize_t date_len;
static time_t date_second = -1;

static const char *const WEEKDAYS[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* "Date: <IMF-fixdate>\r\n" for `second` into date_line; 0 if the clock makes no sense. */
static int
format_date(time_t second)
{
    struct tm tm;
    if (gmtime_r(&second, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
        return 0;
    int n = snprintf(date_line, sizeof(date_line), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                     WEEKDAYS[tm.tm_wday], tm.tm_mday, MONTHS[tm.tm_mon], tm.tm_year + 1900,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (n <= 0 || n >= (int)sizeof(date_line))
        return 0;
    date_len = n;
    date_second = second;
    return 1;
}

/* http_date(second) -> the IMF-fixdate text of dates.py, for the tests. */
static PyObject *
http_date(PyObject *self, PyObject *arg)
{
    long long second = PyLong_AsLongLong(arg);
    if (second == -1 && PyErr_Occurred())
        return NULL;
    if (!format_date((time_t)second))
        Py_RETURN_NONE;
    PyObject *text = PyBytes_FromStringAndSize(date_line + 6, date_len - 8);
    date_second = -1; /* the next response formats the current second again */
    return text;
}

static PyObject *a_method, *a_keep_alive, *a_http_version, *method_head;

#define SERVER_LINE "Server: threadloom\r\n"
#define KEEP_ALIVE_LINE "Connection: keep-alive\r\n"
#define CLOSE_LINE "Connection: close\r\n"

/* The Connection line of response.py's _connection_field, or NULL to decline. */
static const char *
connection_line(PyObject *request)
{
    PyObject *keep_alive = PyObject_GetAttr(request, a_keep_alive);
    PyObject *version = keep_alive ? PyObject_GetAttr(request, a_http_version) : NULL;
    const char *line = NULL;
    if (version != NULL && (keep_alive == Py_True || keep_alive == Py_False)) {
        int http10 = version == version_10 || (PyUnicode_Check(version) &&
                                                PyUnicode_CompareWithASCIIString(version, "1.0") == 0);
        line = keep_alive == Py_False ? CLOSE_LINE : http10 ? KEEP_ALIVE_LINE : "";
    }
    Py_XDECREF(keep_alive);
    Py_XDECREF(version);
    PyErr_Clear();
    return line;
}

/*
 * render_whole(request, status, status_line, headers, body)
 *
 * A whole response with a body known in full, as response.py's full_response builds it in
 * the common case: status_line, the app's plain fields, "Content-Length: len(body)" unless
 * the app gave one (which must then equal it), the Date, Server and Connection lines, the
 * blank line, then body. None to decline: a body that is not bytes, a 1xx, 204 or 304, a
 * HEAD request, anything collect_fields declines, a Date or Server field from the app, or a
 * Content-Length that differs from the body's.
 */
static PyObject *
render_whole(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "render_whole takes 5 arguments");
        return NULL;
    }
    PyObject *request = args[0], *status_line = args[2], *headers = args[3], *body = args[4];
    long status = PyLong_Check(args[1]) ? PyLong_AsLong(args[1]) : -1;
    if (status == -1 && PyErr_Occurred())
        PyErr_Clear();
    if (status < 200 || status == 204 || status == 304 || !PyBytes_CheckExact(status_line) ||
        !PyBytes_CheckExact(body))
        Py_RETURN_NONE;
    PyObject *method = PyObject_GetAttr(request, a_method);
    if (method == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    int head = method == method_head || !PyUnicode_Check(method) ||
               PyUnicode_CompareWithASCIIString(method, "HEAD") == 0;
    Py_DECREF(method);
    const char *connection = head ? NULL : connection_line(request);
    if (connection == NULL)
        Py_RETURN_NONE;
    struct timespec clock; /* the clock time.time() reads (time(2) may lag it by a tick) */
    if (clock_gettime(CLOCK_REALTIME, &clock) != 0)
        Py_RETURN_NONE;
    time_t now = clock.tv_sec;
    if (now != date_second && !format_date(now))
        Py_RETURN_NONE;
    Fields f;
    if (!collect_fields(headers, &f))
        Py_RETURN_NONE;
    Py_ssize_t body_len = PyBytes_GET_SIZE(body);
    PyObject *result = NULL;
    char length_line[48];
    int length_len = 0;
    if (f.seen || (f.length >= 0 && f.length != (long long)body_len))
        Py_RETURN_NONE;
    if (f.length < 0)
        length_len = snprintf(length_line, sizeof(length_line), "Content-Length: %zd\r\n",
                              body_len);
    Py_ssize_t connection_len = (Py_ssize_t)strlen(connection);
    Py_ssize_t size = PyBytes_GET_SIZE(status_line) + f.total + length_len + date_len +
                      (Py_ssize_t)strlen(SERVER_LINE) + connection_len + 2 + body_len;
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(result);
    memcpy(out, PyBytes_AS_STRING(status_line), PyBytes_GET_SIZE(status_line));
    out += PyBytes_GET_SIZE(status_line);
    out = write_fields(&f, out);
    memcpy(out, length_line, length_len);
    out += length_len;
    memcpy(out, date_line, date_len);
    out += date_len;
    memcpy(out, SERVER_LINE, strlen(SERVER_LINE));
    out += strlen(SERVER_LINE);
    memcpy(out, connection, connection_len);
    out += connection_len;
    *out++ = '\r';
    *out++ = '\n';
    memcpy(out, PyBytes_AS_STRING(body), body_len);
    return result;
}

static PyMethodDef methods[] = {
    {"bind_types", bind_types, METH_VARARGS,
     "Bind the Request, RequestBody and deque types that parse_request builds."},
    {"parse_request", (PyCFunction)(void (*)(void))parse_request, METH_FASTCALL,
     "One clean, complete request at data[pos] as a tuple, or None (the Python path decides)."},
    {"scan_headers", scan_headers, METH_O,
     "Response fields checked and joined, or None (the Python path decides)."},
    {"render_whole", (PyCFunction)(void (*)(void))render_whole, METH_FASTCALL,
     "A whole response with its body in one bytes object, or None (the Python path decides)."},
    {"http_date", http_date, METH_O, "The IMF-fixdate of a second, as the Date line has it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "threadloom.protocols.http1._speedups",
    "The HTTP/1.1 hot path's common case in C (see _speedups.c).", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    init_tables();
    for (int m = 0; METHODS[m]; m++) {
        method_names[m] = PyUnicode_InternFromString(METHODS[m]);
        if (method_names[m] == NULL)
            return NULL;
    }
    version_10 = PyUnicode_InternFromString("1.0");
    version_11 = PyUnicode_InternFromString("1.1");
    if (version_10 == NULL || version_11 == NULL)
        return NULL;
    a_method = PyUnicode_InternFromString("method");
    a_keep_alive = PyUnicode_InternFromString("keep_alive");
    a_http_version = PyUnicode_InternFromString("http_version");
    method_head = method_names[1];
    if (a_method == NULL || a_keep_alive == NULL || a_http_version == NULL)
        return NULL;
    return PyModule_Create(&module);
}
