/*
 * threadloom.interfaces._wsgi: the WSGI hot path in C (see interfaces/wsgi.py).
 *
 * Why: after the HTTP core's fast path, a small WSGI request's Python time went mostly to
 * building the environ (a dict copy, a dozen stores, three decodes and a loop over the
 * header fields) and to the exchange's bookkeeping (its construction, start_response and
 * sending a whole response: a few dozen bytecodes each).
 *
 * - environ() does exactly what WSGIRunner.environ_py does; tests/protocols/test_speedups.py
 *   compares the two on generated requests.
 * - ExchangeCore holds an exchange's state and runs the common case of start_response and
 *   send_whole. Like the HTTP core's extension, it never decides anything itself: whatever is
 *   not the plain case (exc_info, a second call, a status seen for the first time, request
 *   ids, fields the HTTP core's render_whole declines) goes to the Python methods
 *   _start_response and _send_whole of wsgi.py's _Exchange, which are the reference.
 *
 * Optional: when it is missing, or THREADLOOM_PURE_PYTHON=1, the Python versions run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

static PyObject *a_method, *a_path, *a_query, *a_target, *a_http_version, *a_headers;
static PyObject *k_method, *k_path, *k_query, *k_raw_uri, *k_request_uri, *k_protocol;
static PyObject *k_input, *k_remote_addr, *k_remote_port, *k_cookie, *empty;
static PyObject *v_http11, *v_http10, *v_localhost, *v_zero, *comma, *semicolon;

/* 0-15 for an ASCII hex digit, else -1 (not isxdigit: that one follows the locale). */
static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* urllib.parse.unquote_to_bytes, then latin-1: "%41" is "A", a bad escape stays as it is. */
static PyObject *
unquoted_text(PyObject *path)
{
    const char *p = PyBytes_AS_STRING(path);
    Py_ssize_t n = PyBytes_GET_SIZE(path);
    if (memchr(p, '%', n) == NULL)
        return PyUnicode_DecodeLatin1(p, n, NULL);
    char *out = PyMem_Malloc(n ? n : 1);
    if (out == NULL)
        return PyErr_NoMemory();
    Py_ssize_t o = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int high, low;
        if (p[i] == '%' && i + 2 < n && (high = hex_value(p[i + 1])) >= 0 &&
            (low = hex_value(p[i + 2])) >= 0) {
            out[o++] = (char)(high * 16 + low);
            i += 2;
        }
        else
            out[o++] = p[i];
    }
    PyObject *text = PyUnicode_DecodeLatin1(out, o, NULL);
    PyMem_Free(out);
    return text;
}

/* The environ key of a header name: "HTTP_" + upper-case with "-" as "_"; "" with a "_". */
static PyObject *
header_key(PyObject *name, PyObject *keys)
{
    PyObject *key = PyDict_GetItemWithError(keys, name); /* borrowed */
    if (key != NULL)
        return Py_NewRef(key);
    if (PyErr_Occurred())
        return NULL;
    const char *s = PyBytes_AS_STRING(name);
    Py_ssize_t n = PyBytes_GET_SIZE(name);
    if (memchr(s, '_', n) != NULL) {
        key = Py_NewRef(empty);
    }
    else {
        key = PyUnicode_New(n + 5, 255);
        if (key == NULL)
            return NULL;
        Py_UCS1 *out = PyUnicode_1BYTE_DATA(key);
        memcpy(out, "HTTP_", 5);
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            out[5 + i] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (Py_UCS1)(c - 32) : c;
        }
    }
    if (PyDict_GET_SIZE(keys) < 1024 && PyDict_SetItem(keys, name, key) < 0) {
        Py_DECREF(key);
        return NULL;
    }
    return key;
}

static int
set_new(PyObject *env, PyObject *key, PyObject *value)
{
    if (value == NULL)
        return -1;
    int failed = PyDict_SetItem(env, key, value);
    Py_DECREF(value);
    return failed;
}

static int
add_headers(PyObject *env, PyObject *headers, PyObject *keys)
{
    if (!PyList_Check(headers)) {
        PyErr_SetString(PyExc_TypeError, "request.headers must be a list");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) || !PyBytes_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "request.headers holds (bytes, bytes) pairs");
            return -1;
        }
        PyObject *key = header_key(PyTuple_GET_ITEM(pair, 0), keys);
        if (key == NULL)
            return -1;
        if (PyUnicode_GET_LENGTH(key) == 0) {
            Py_DECREF(key); /* X_Forwarded_For would otherwise pose as X-Forwarded-For */
            continue;
        }
        PyObject *value = PyTuple_GET_ITEM(pair, 1);
        PyObject *text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
                                                NULL);
        PyObject *before = text ? PyDict_GetItemWithError(env, key) : NULL; /* borrowed */
        if (before != NULL) {
            int cookie = PyUnicode_Compare(key, k_cookie) == 0;
            PyObject *joined = PyUnicode_Concat(before, cookie ? semicolon : comma);
            PyObject *whole = joined ? PyUnicode_Concat(joined, text) : NULL;
            Py_XDECREF(joined);
            Py_DECREF(text);
            text = whole;
        }
        int failed = text == NULL || PyErr_Occurred() || PyDict_SetItem(env, key, text) < 0;
        Py_XDECREF(text);
        Py_DECREF(key);
        if (failed)
            return -1;
    }
    return 0;
}

/*
 * environ(template, request, body, client, keys) -> dict
 *
 * template: the per-server keys; keys: the shared header-name -> environ-key cache (bytes ->
 * str, "" for names to drop), seeded with content-type and content-length.
 */
static PyObject *
build_environ(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyDict_Check(args[0]) || !PyDict_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "environ(template: dict, request, body, client, "
                                         "keys: dict)");
        return NULL;
    }
    PyObject *template = args[0], *request = args[1], *body = args[2], *client = args[3];
    PyObject *keys = args[4];
    PyObject *env = PyDict_Copy(template);
    if (env == NULL)
        return NULL;
    PyObject *method = PyObject_GetAttr(request, a_method);
    PyObject *path = PyObject_GetAttr(request, a_path);
    PyObject *query = PyObject_GetAttr(request, a_query);
    PyObject *target = PyObject_GetAttr(request, a_target);
    PyObject *version = PyObject_GetAttr(request, a_http_version);
    PyObject *headers = PyObject_GetAttr(request, a_headers);
    int failed = 1;
    if (!(method && path && query && target && version && headers))
        goto done;
    if (!PyBytes_Check(path) || !PyBytes_Check(query) || !PyBytes_Check(target) ||
        !PyUnicode_Check(version)) {
        PyErr_SetString(PyExc_TypeError, "request fields of the wrong type");
        goto done;
    }
    PyObject *protocol;
    if (PyUnicode_CompareWithASCIIString(version, "1.1") == 0)
        protocol = Py_NewRef(v_http11);
    else if (PyUnicode_CompareWithASCIIString(version, "1.0") == 0)
        protocol = Py_NewRef(v_http10);
    else
        protocol = PyUnicode_FromFormat("HTTP/%U", version);
    PyObject *uri = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(target), PyBytes_GET_SIZE(target),
                                           NULL);
    if (uri == NULL) {
        Py_XDECREF(protocol);
        goto done;
    }
    int uri_failed = PyDict_SetItem(env, k_raw_uri, uri) < 0;
    if (set_new(env, k_request_uri, uri) < 0 || uri_failed ||
        PyDict_SetItem(env, k_method, method) < 0 ||
        set_new(env, k_path, unquoted_text(path)) < 0 ||
        set_new(env, k_query, PyUnicode_DecodeLatin1(PyBytes_AS_STRING(query),
                                                      PyBytes_GET_SIZE(query), NULL)) < 0 ||
        set_new(env, k_protocol, protocol) < 0 || PyDict_SetItem(env, k_input, body) < 0)
        goto done;
    if (PyTuple_Check(client) && PyTuple_GET_SIZE(client) >= 2) {
        if (PyDict_SetItem(env, k_remote_addr, PyTuple_GET_ITEM(client, 0)) < 0 ||
            set_new(env, k_remote_port, PyObject_Str(PyTuple_GET_ITEM(client, 1))) < 0)
            goto done;
    }
    else if (PyDict_SetItem(env, k_remote_addr, v_localhost) < 0 ||
             PyDict_SetItem(env, k_remote_port, v_zero) < 0)
        goto done;
    failed = add_headers(env, headers, keys) < 0;
done:
    Py_XDECREF(method);
    Py_XDECREF(path);
    Py_XDECREF(query);
    Py_XDECREF(target);
    Py_XDECREF(version);
    Py_XDECREF(headers);
    if (failed) {
        Py_DECREF(env);
        return NULL;
    }
    return env;
}

/* -- ExchangeCore --------------------------------------------------------------------------- */

/* What bind_exchange gives: wsgi.py's status cache ("200 OK" -> (200, "OK", status line or
 * None)) and the HTTP core's render_whole. */
static PyObject *statuses, *render_whole;
/* Bodies this large are sent beside their head by the Python path, never joined (Python's
 * outbox.JOIN_MAX, handed over by bind_exchange). */
static Py_ssize_t join_max = PY_SSIZE_T_MAX;
static PyObject *s_start_response, *s_send_whole, *s_write, *s_send, *a_keep_alive;

typedef struct {
    PyObject_HEAD
    PyObject *request, *sink, *request_id, *remote;    /* given */
    PyObject *status, *reason, *line, *headers;         /* from start_response */
    PyObject *framer, *keep_alive_whole, *sent, *keep_alive;
} ExchangeCore;

static PyObject *zero, *empty_str;

static int
core_init(ExchangeCore *self, PyObject *args, PyObject *kwargs)
{
    PyObject *request, *sink, *request_id, *remote;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs)) ||
        !PyArg_UnpackTuple(args, "ExchangeCore", 4, 4, &request, &sink, &request_id, &remote)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "ExchangeCore(request, sink, request_id, remote)");
        return -1;
    }
    PyObject *keep_alive = PyObject_GetAttr(request, a_keep_alive);
    if (keep_alive == NULL)
        return -1;
    Py_XSETREF(self->request, Py_NewRef(request));
    Py_XSETREF(self->sink, Py_NewRef(sink));
    Py_XSETREF(self->request_id, Py_NewRef(request_id));
    Py_XSETREF(self->remote, Py_NewRef(remote));
    Py_XSETREF(self->status, Py_NewRef(zero));
    Py_XSETREF(self->reason, Py_NewRef(empty_str));
    Py_XSETREF(self->line, Py_NewRef(Py_None));
    Py_XSETREF(self->headers, Py_NewRef(Py_None));
    Py_XSETREF(self->framer, Py_NewRef(Py_None));
    Py_XSETREF(self->keep_alive_whole, Py_NewRef(Py_None));
    Py_XSETREF(self->sent, Py_NewRef(zero));
    Py_XSETREF(self->keep_alive, keep_alive); /* until the outcome: no error has ruled it out */
    return 0;
}

static int
core_traverse(ExchangeCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->request); /* not the type: static here, and subtype_traverse visits a subclass */
    Py_VISIT(self->sink);
    Py_VISIT(self->request_id);
    Py_VISIT(self->remote);
    Py_VISIT(self->status);
    Py_VISIT(self->reason);
    Py_VISIT(self->line);
    Py_VISIT(self->headers);
    Py_VISIT(self->framer);
    Py_VISIT(self->keep_alive_whole);
    Py_VISIT(self->sent);
    Py_VISIT(self->keep_alive);
    return 0;
}

static int
core_clear(ExchangeCore *self)
{
    Py_CLEAR(self->request);
    Py_CLEAR(self->sink);
    Py_CLEAR(self->request_id);
    Py_CLEAR(self->remote);
    Py_CLEAR(self->status);
    Py_CLEAR(self->reason);
    Py_CLEAR(self->line);
    Py_CLEAR(self->headers);
    Py_CLEAR(self->framer);
    Py_CLEAR(self->keep_alive_whole);
    Py_CLEAR(self->sent);
    Py_CLEAR(self->keep_alive);
    return 0;
}

/* A static type's dealloc: for a Python subclass, subtype_dealloc releases the class. */
static void
core_dealloc(ExchangeCore *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* self._<name>(*args): the Python method that decides what the fast path declined. */
static PyObject *
delegate(PyObject *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *call[4] = {self, NULL, NULL, NULL};
    for (Py_ssize_t i = 0; i < nargs && i < 3; i++)
        call[i + 1] = args[i];
    return PyObject_VectorcallMethod(name, call, (size_t)(nargs + 1), NULL);
}

/*
 * start_response(status, headers, exc_info=None): the first call of a plain response (no
 * exc_info, a status already in the cache, a list of headers, no request id to add) is
 * recorded here; anything else goes to _start_response.
 */
static PyObject *
core_start_response(ExchangeCore *self, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    if (kwnames != NULL || nargs < 2 || nargs > 3 || (nargs == 3 && args[2] != Py_None) ||
        self->headers != Py_None || self->request_id != Py_None ||
        !PyUnicode_CheckExact(args[0]) || !PyList_CheckExact(args[1]) || statuses == NULL) {
        if (kwnames != NULL) { /* exc_info=... by name: let Python bind it */
            PyObject *method = PyObject_GetAttr((PyObject *)self, s_start_response);
            if (method == NULL)
                return NULL;
            PyObject *result = PyObject_Vectorcall(method, args, (size_t)nargs, kwnames);
            Py_DECREF(method);
            return result;
        }
        return delegate((PyObject *)self, s_start_response, args, nargs);
    }
    PyObject *parsed = PyDict_GetItemWithError(statuses, args[0]); /* borrowed */
    if (parsed == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return delegate((PyObject *)self, s_start_response, args, nargs);
    }
    if (!PyTuple_CheckExact(parsed) || PyTuple_GET_SIZE(parsed) != 3) {
        PyErr_SetString(PyExc_TypeError, "the status cache holds (code, reason, line)");
        return NULL;
    }
    PyObject *headers = PyList_GetSlice(args[1], 0, PyList_GET_SIZE(args[1]));
    if (headers == NULL)
        return NULL;
    Py_SETREF(self->status, Py_NewRef(PyTuple_GET_ITEM(parsed, 0)));
    Py_SETREF(self->reason, Py_NewRef(PyTuple_GET_ITEM(parsed, 1)));
    Py_SETREF(self->line, Py_NewRef(PyTuple_GET_ITEM(parsed, 2)));
    Py_SETREF(self->headers, headers);
    return PyObject_GetAttr((PyObject *)self, s_write);
}

/*
 * send_whole(body): render the whole response with the HTTP core's render_whole, which also
 * says whether the connection is kept after it, and send it through the sink; when
 * render_whole declines (or there is no status line), _send_whole.
 */
static PyObject *
core_send_whole(ExchangeCore *self, PyObject *body)
{
    if (self->headers == Py_None || self->line == Py_None || render_whole == NULL ||
        (PyBytes_Check(body) && PyBytes_GET_SIZE(body) >= join_max))
        return delegate((PyObject *)self, s_send_whole, &body, 1);
    PyObject *args[5] = {self->request, self->status, self->line, self->headers, body};
    PyObject *data = PyObject_Vectorcall(render_whole, args, 5, NULL);
    if (data == NULL)
        return NULL;
    if (data == Py_None) {
        Py_DECREF(data);
        return delegate((PyObject *)self, s_send_whole, &body, 1);
    }
    PyObject *whole = data; /* (data, keep-alive after it), as response.py's _AFTER_WHOLE says */
    if (!PyTuple_CheckExact(whole) || PyTuple_GET_SIZE(whole) != 2 ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(whole, 0))) {
        Py_DECREF(whole);
        PyErr_SetString(PyExc_TypeError, "render_whole returns (bytes, keep_alive) or None");
        return NULL;
    }
    data = Py_NewRef(PyTuple_GET_ITEM(whole, 0));
    PyObject *keep_alive = Py_NewRef(PyTuple_GET_ITEM(whole, 1));
    Py_DECREF(whole);
    int alive = PyObject_IsTrue(self->keep_alive);
    if (alive < 0) {
        Py_DECREF(data);
        Py_DECREF(keep_alive);
        return NULL;
    }
    /* keep_alive = keep_alive and keep_alive_whole, as the Python version has it */
    Py_SETREF(self->keep_alive, Py_NewRef(alive ? keep_alive : self->keep_alive));
    Py_SETREF(self->keep_alive_whole, keep_alive);
    PyObject *call[2] = {self->sink, data};
    PyObject *sent = PyObject_VectorcallMethod(s_send, call, 2, NULL);
    if (sent == NULL) {
        Py_DECREF(data);
        return NULL;
    }
    Py_DECREF(sent);
    PyObject *size = PyLong_FromSsize_t(PyBytes_GET_SIZE(data));
    Py_DECREF(data);
    PyObject *total = size ? PyNumber_Add(self->sent, size) : NULL;
    Py_XDECREF(size);
    if (total == NULL)
        return NULL;
    Py_SETREF(self->sent, total);
    Py_RETURN_NONE;
}

static PyMethodDef core_methods[] = {
    {"start_response", (PyCFunction)(void (*)(void))core_start_response,
     METH_FASTCALL | METH_KEYWORDS, "PEP 3333 start_response (the plain case; see _wsgi.c)."},
    {"send_whole", (PyCFunction)core_send_whole, METH_O,
     "Send a response whose body is known in full (the plain case; see _wsgi.c)."},
    {NULL, NULL, 0, NULL},
};

#define MEMBER(name) {#name, T_OBJECT, offsetof(ExchangeCore, name), 0, NULL}
static PyMemberDef core_members[] = {
    MEMBER(request), MEMBER(sink), MEMBER(request_id), MEMBER(remote),
    MEMBER(status), MEMBER(reason), MEMBER(line), MEMBER(headers),
    MEMBER(framer), MEMBER(keep_alive_whole), MEMBER(sent), MEMBER(keep_alive),
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ExchangeCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "threadloom.interfaces._wsgi.ExchangeCore",
    .tp_basicsize = sizeof(ExchangeCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The state of one WSGI exchange, and the common case of its hot methods.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)core_init,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_methods = core_methods,
    .tp_members = core_members,
};

/* bind_exchange(statuses, render_whole, join_max): what ExchangeCore's fast paths consult. */
static PyObject *
bind_exchange(PyObject *self, PyObject *args)
{
    PyObject *cache, *render;
    Py_ssize_t largest;
    if (!PyArg_ParseTuple(args, "O!On", &PyDict_Type, &cache, &render, &largest))
        return NULL;
    join_max = largest;
    Py_XSETREF(statuses, Py_NewRef(cache));
    Py_XSETREF(render_whole, render == Py_None ? NULL : Py_NewRef(render));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"environ", (PyCFunction)(void (*)(void))build_environ, METH_FASTCALL,
     "The PEP 3333 environ of one request (see wsgi.py)."},
    {"bind_exchange", bind_exchange, METH_VARARGS,
     "Bind the status cache, render_whole and join_max that ExchangeCore's fast paths use."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "threadloom.interfaces._wsgi",
    "The WSGI hot path in C (see _wsgi.c).", -1, methods,
};

static int
intern_all(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&a_method, "method"},           {&a_path, "path"},
        {&a_query, "query"},             {&a_target, "target"},
        {&a_http_version, "http_version"}, {&a_headers, "headers"},
        {&k_method, "REQUEST_METHOD"},   {&k_path, "PATH_INFO"},
        {&k_query, "QUERY_STRING"},      {&k_raw_uri, "RAW_URI"},
        {&k_request_uri, "REQUEST_URI"}, {&k_protocol, "SERVER_PROTOCOL"},
        {&k_input, "wsgi.input"},        {&k_remote_addr, "REMOTE_ADDR"},
        {&k_remote_port, "REMOTE_PORT"}, {&k_cookie, "HTTP_COOKIE"},
        {&empty, ""},                    {&v_http11, "HTTP/1.1"},
        {&v_http10, "HTTP/1.0"},         {&v_localhost, "127.0.0.1"},
        {&v_zero, "0"},                  {&comma, ","},
        {&semicolon, ";"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL)
            return -1;
    }
    return 0;
}

PyMODINIT_FUNC
PyInit__wsgi(void)
{
    if (intern_all() < 0)
        return NULL;
    s_start_response = PyUnicode_InternFromString("_start_response");
    s_send_whole = PyUnicode_InternFromString("_send_whole");
    s_write = PyUnicode_InternFromString("write");
    s_send = PyUnicode_InternFromString("send");
    a_keep_alive = PyUnicode_InternFromString("keep_alive");
    zero = PyLong_FromLong(0);
    empty_str = PyUnicode_New(0, 0);
    if (!s_start_response || !s_send_whole || !s_write || !s_send || !a_keep_alive || !zero ||
        !empty_str || PyType_Ready(&ExchangeCoreType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "ExchangeCore", (PyObject *)&ExchangeCoreType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
