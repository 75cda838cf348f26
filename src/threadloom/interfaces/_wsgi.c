/*
 * threadloom.interfaces._wsgi: the WSGI hot path in C (see interfaces/wsgi.py).
 *
 * Why: after the HTTP core's fast path, a small WSGI request's Python time went mostly to
 * building the environ (a dict copy, a dozen stores, three decodes and a loop over the
 * header fields) and to the exchange's bookkeeping (its construction, start_response and
 * sending a whole response: a few dozen bytecodes each).
 *
 * - environ() does exactly what WSGIRunner.environ_py does; tests/protocols/test_speedups.py
 *   compares the two on generated requests. The environ key of a header name comes from
 *   wsgi.py's cache, or from wsgi.py's _env_key on a miss (bound by bind_environ): the rule
 *   that names keys lives in Python only.
 * - ExchangeCore holds an exchange's state and runs the common case of start_response and
 *   send_whole. Like the HTTP core's extension, it never decides anything itself: whatever is
 *   not the plain case (exc_info, a second call, a status seen for the first time, request
 *   ids, fields the HTTP core's render_whole declines) goes to the Python methods
 *   _start_response and _send_whole of wsgi.py's _Exchange, which are the reference.
 *
 * Multi-phase init (PEP 489): the interned names, ExchangeCore (a heap type) and what wsgi.py
 * binds live in the module's state, not in static globals.
 *
 * Optional: when it is missing, or THREADLOOM_PURE_PYTHON=1, the Python versions run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

/* The interned names this module uses (attribute names, environ keys, constant values). */
#define WSGI_STRINGS(X)                                                                        \
    X(a_method, "method") X(a_path, "path") X(a_query, "query") X(a_target, "target")          \
    X(a_http_version, "http_version") X(a_headers, "headers") X(a_keep_alive, "keep_alive")    \
    X(k_method, "REQUEST_METHOD") X(k_path, "PATH_INFO") X(k_query, "QUERY_STRING")            \
    X(k_raw_uri, "RAW_URI") X(k_request_uri, "REQUEST_URI") X(k_protocol, "SERVER_PROTOCOL")   \
    X(k_input, "wsgi.input") X(k_remote_addr, "REMOTE_ADDR") X(k_remote_port, "REMOTE_PORT")   \
    X(k_cookie, "HTTP_COOKIE") X(v_http11, "HTTP/1.1") X(v_http10, "HTTP/1.0")                 \
    X(v_localhost, "127.0.0.1") X(v_zero, "0") X(comma, ",") X(semicolon, ";")                \
    X(s_start_response, "_start_response") X(s_send_whole, "_send_whole") X(s_write, "write") \
    X(s_send, "send") X(empty_str, "")

/*
 * The module's state (PEP 489 multi-phase init: no static globals, so each interpreter and
 * each re-import has its own). Everything the fast paths consult that is a rule rather than
 * a constant comes from wsgi.py at import, through bind_environ and bind_exchange.
 */
typedef struct {
#define DECLARE(name, text) PyObject *name;
    WSGI_STRINGS(DECLARE)
#undef DECLARE
    PyObject *zero;
    PyTypeObject *core_type;
    /* bind_environ: the header-name -> environ-key cache and the Python function that fills
       it on a miss (wsgi.py's _env_key: the rule lives there only) */
    PyObject *keys, *key_of;
    /* bind_exchange: wsgi.py's status cache ("200 OK" -> (200, "OK", line or None)), the HTTP
       core's render_whole, and outbox.JOIN_MAX (bodies this large are sent beside their head
       by the Python path, never joined) */
    PyObject *statuses, *render_whole;
    Py_ssize_t join_max;
} wsgi_state;

static struct PyModuleDef module_def;

static inline wsgi_state *
state_of(PyObject *module)
{
    return (wsgi_state *)PyModule_GetState(module);
}

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

/* The environ key of a header name (a new reference): the cache's, or what wsgi.py's
   _env_key makes of it ("HTTP_" + upper-case with "-" as "_"; "" for a name to drop). The
   rule lives in Python only; _env_key also fills the cache, within its bound. */
static PyObject *
header_key(wsgi_state *st, PyObject *name)
{
    PyObject *key = PyDict_GetItemWithError(st->keys, name); /* borrowed */
    if (key != NULL)
        return Py_NewRef(key);
    if (PyErr_Occurred())
        return NULL;
    key = PyObject_CallOneArg(st->key_of, name);
    if (key != NULL && !PyUnicode_CheckExact(key)) {
        PyErr_Format(PyExc_TypeError, "_env_key returned %.100s, not str", Py_TYPE(key)->tp_name);
        Py_CLEAR(key);
    }
    return key;
}

/* env[key] = value, stealing value; -1 (with the exception set) if value is NULL. */
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
add_headers(wsgi_state *st, PyObject *env, PyObject *headers)
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
        Py_INCREF(pair); /* _env_key is Python code: it could change the list */
        PyObject *key = header_key(st, PyTuple_GET_ITEM(pair, 0));
        if (key == NULL || PyUnicode_GET_LENGTH(key) == 0) {
            Py_DECREF(pair); /* X_Forwarded_For would otherwise pose as X-Forwarded-For */
            if (key == NULL)
                return -1;
            Py_DECREF(key);
            continue;
        }
        PyObject *value = PyTuple_GET_ITEM(pair, 1);
        PyObject *text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
                                                NULL);
        Py_DECREF(pair);
        PyObject *before = text ? PyDict_GetItemWithError(env, key) : NULL; /* borrowed */
        if (before != NULL) {
            int cookie = PyUnicode_Compare(key, st->k_cookie) == 0;
            PyObject *joined = PyUnicode_Concat(before, cookie ? st->semicolon : st->comma);
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

/* The request's fields into env, as environ_py stores them; -1 with an exception set. Each
   step runs only when the one before it succeeded, and every reference it makes is either
   stored or released before the next. */
static int
add_request(wsgi_state *st, PyObject *env, PyObject *method, PyObject *path,
            PyObject *query, PyObject *target, PyObject *version)
{
    if (!PyBytes_Check(path) || !PyBytes_Check(query) || !PyBytes_Check(target) ||
        !PyUnicode_Check(version)) {
        PyErr_SetString(PyExc_TypeError, "request fields of the wrong type");
        return -1;
    }
    PyObject *uri = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(target), PyBytes_GET_SIZE(target),
                                           NULL);
    if (uri == NULL)
        return -1;
    int failed = PyDict_SetItem(env, st->k_raw_uri, uri) < 0;
    if (set_new(env, st->k_request_uri, uri) < 0 || failed) /* set_new releases uri */
        return -1;
    if (PyDict_SetItem(env, st->k_method, method) < 0 ||
        set_new(env, st->k_path, unquoted_text(path)) < 0 ||
        set_new(env, st->k_query, PyUnicode_DecodeLatin1(PyBytes_AS_STRING(query),
                                                         PyBytes_GET_SIZE(query), NULL)) < 0)
        return -1;
    PyObject *protocol;
    if (PyUnicode_CompareWithASCIIString(version, "1.1") == 0)
        protocol = Py_NewRef(st->v_http11);
    else if (PyUnicode_CompareWithASCIIString(version, "1.0") == 0)
        protocol = Py_NewRef(st->v_http10);
    else
        protocol = PyUnicode_FromFormat("HTTP/%U", version);
    return set_new(env, st->k_protocol, protocol); /* releases protocol, stored or not */
}

/*
 * environ(template, request, body, client) -> dict
 *
 * template: the per-server keys. Header names become keys through the cache and function
 * bound by bind_environ (RuntimeError before it).
 */
static PyObject *
build_environ(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    wsgi_state *st = state_of(module);
    if (nargs != 4 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "environ(template: dict, request, body, client)");
        return NULL;
    }
    if (st->keys == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_wsgi.environ before bind_environ");
        return NULL;
    }
    PyObject *template = args[0], *request = args[1], *body = args[2], *client = args[3];
    PyObject *env = PyDict_Copy(template);
    if (env == NULL)
        return NULL;
    PyObject *method = PyObject_GetAttr(request, st->a_method);
    PyObject *path = method ? PyObject_GetAttr(request, st->a_path) : NULL;
    PyObject *query = path ? PyObject_GetAttr(request, st->a_query) : NULL;
    PyObject *target = query ? PyObject_GetAttr(request, st->a_target) : NULL;
    PyObject *version = target ? PyObject_GetAttr(request, st->a_http_version) : NULL;
    PyObject *headers = version ? PyObject_GetAttr(request, st->a_headers) : NULL;
    int failed = headers == NULL ||
                 add_request(st, env, method, path, query, target, version) < 0 ||
                 PyDict_SetItem(env, st->k_input, body) < 0;
    if (!failed && PyTuple_Check(client) && PyTuple_GET_SIZE(client) >= 2) {
        failed = PyDict_SetItem(env, st->k_remote_addr, PyTuple_GET_ITEM(client, 0)) < 0 ||
                 set_new(env, st->k_remote_port, PyObject_Str(PyTuple_GET_ITEM(client, 1))) < 0;
    }
    else if (!failed) {
        failed = PyDict_SetItem(env, st->k_remote_addr, st->v_localhost) < 0 ||
                 PyDict_SetItem(env, st->k_remote_port, st->v_zero) < 0;
    }
    if (!failed)
        failed = add_headers(st, env, headers) < 0;
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

/*
 * Its members are T_OBJECT_EX, like the slots of the pure-Python _ExchangeState: wsgi.py's
 * methods assign them, and one may be deleted (an app can reach the exchange through
 * start_response.__self__). A deleted member is NULL here; the fast paths then leave the
 * call to the Python method, which raises AttributeError as the pure-Python class does.
 */
typedef struct {
    PyObject_HEAD
    PyObject *request, *sink, *request_id, *remote;    /* given */
    PyObject *status, *reason, *line, *headers;         /* from start_response */
    PyObject *framer, *keep_alive_whole, *sent, *keep_alive;
} ExchangeCore;

static int
core_init(ExchangeCore *self, PyObject *args, PyObject *kwargs)
{
    PyObject *module = PyType_GetModuleByDef(Py_TYPE(self), &module_def);
    if (module == NULL)
        return -1;
    wsgi_state *st = state_of(module);
    PyObject *request, *sink, *request_id, *remote;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs)) ||
        !PyArg_UnpackTuple(args, "ExchangeCore", 4, 4, &request, &sink, &request_id, &remote)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "ExchangeCore(request, sink, request_id, remote)");
        return -1;
    }
    PyObject *keep_alive = PyObject_GetAttr(request, st->a_keep_alive);
    if (keep_alive == NULL)
        return -1;
    Py_XSETREF(self->request, Py_NewRef(request));
    Py_XSETREF(self->sink, Py_NewRef(sink));
    Py_XSETREF(self->request_id, Py_NewRef(request_id));
    Py_XSETREF(self->remote, Py_NewRef(remote));
    Py_XSETREF(self->status, Py_NewRef(st->zero));
    Py_XSETREF(self->reason, Py_NewRef(st->empty_str));
    Py_XSETREF(self->line, Py_NewRef(Py_None));
    Py_XSETREF(self->headers, Py_NewRef(Py_None));
    Py_XSETREF(self->framer, Py_NewRef(Py_None));
    Py_XSETREF(self->keep_alive_whole, Py_NewRef(Py_None));
    Py_XSETREF(self->sent, Py_NewRef(st->zero));
    Py_XSETREF(self->keep_alive, keep_alive); /* until the outcome: no error has ruled it out */
    return 0;
}

static int
core_traverse(ExchangeCore *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self)); /* a heap type; a subclass's subtype_traverse leaves it to us */
    Py_VISIT(self->request);
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

/* A heap type's dealloc releases the type (for a Python subclass too: subtype_dealloc
   leaves that to a heap-type base). */
static void
core_dealloc(ExchangeCore *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    core_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
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
core_start_response(ExchangeCore *self, PyTypeObject *cls, PyObject *const *args,
                    Py_ssize_t nargs, PyObject *kwnames)
{
    wsgi_state *st = (wsgi_state *)PyType_GetModuleState(cls);
    if (kwnames != NULL) { /* exc_info=... by name: let Python bind it */
        PyObject *method = PyObject_GetAttr((PyObject *)self, st->s_start_response);
        if (method == NULL)
            return NULL;
        PyObject *result = PyObject_Vectorcall(method, args, (size_t)nargs, kwnames);
        Py_DECREF(method);
        return result;
    }
    if (nargs < 2 || nargs > 3 || (nargs == 3 && args[2] != Py_None) ||
        self->headers != Py_None || self->request_id != Py_None ||
        !PyUnicode_CheckExact(args[0]) || !PyList_CheckExact(args[1]) || st->statuses == NULL)
        return delegate((PyObject *)self, st->s_start_response, args, nargs);
    PyObject *parsed = PyDict_GetItemWithError(st->statuses, args[0]); /* borrowed */
    if (parsed == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return delegate((PyObject *)self, st->s_start_response, args, nargs);
    }
    if (!PyTuple_CheckExact(parsed) || PyTuple_GET_SIZE(parsed) != 3) {
        PyErr_SetString(PyExc_TypeError, "the status cache holds (code, reason, line)");
        return NULL;
    }
    PyObject *headers = PyList_GetSlice(args[1], 0, PyList_GET_SIZE(args[1]));
    if (headers == NULL)
        return NULL;
    Py_XSETREF(self->status, Py_NewRef(PyTuple_GET_ITEM(parsed, 0)));
    Py_XSETREF(self->reason, Py_NewRef(PyTuple_GET_ITEM(parsed, 1)));
    Py_XSETREF(self->line, Py_NewRef(PyTuple_GET_ITEM(parsed, 2)));
    Py_XSETREF(self->headers, headers);
    return PyObject_GetAttr((PyObject *)self, st->s_write);
}

/* A member's value (a new reference), or the AttributeError reading it raises if deleted. */
static PyObject *
member(ExchangeCore *self, PyObject *slot, const char *name)
{
    if (slot != NULL)
        return Py_NewRef(slot);
    return PyObject_GetAttrString((PyObject *)self, name);
}

/* What _send_whole does after full_response, with `whole` = (data, keep_alive):
 *   self.keep_alive_whole = keep_alive
 *   self.keep_alive = self.keep_alive and keep_alive
 *   self.sink.send(data)
 *   self.sent += len(data) */
static int
settle_whole(wsgi_state *st, ExchangeCore *self, PyObject *data, PyObject *keep_alive)
{
    Py_XSETREF(self->keep_alive_whole, Py_NewRef(keep_alive));
    PyObject *before = member(self, self->keep_alive, "keep_alive");
    int alive = before ? PyObject_IsTrue(before) : -1;
    if (alive < 0) {
        Py_XDECREF(before);
        return -1;
    }
    Py_XSETREF(self->keep_alive, alive ? Py_NewRef(keep_alive) : before);
    if (alive)
        Py_DECREF(before);
    PyObject *sink = member(self, self->sink, "sink");
    PyObject *call[2] = {sink, data};
    PyObject *sent = sink ? PyObject_VectorcallMethod(st->s_send, call, 2, NULL) : NULL;
    Py_XDECREF(sink);
    if (sent == NULL)
        return -1;
    Py_DECREF(sent);
    PyObject *total = member(self, self->sent, "sent");
    PyObject *size = total ? PyLong_FromSsize_t(PyBytes_GET_SIZE(data)) : NULL;
    PyObject *sum = size ? PyNumber_InPlaceAdd(total, size) : NULL;
    Py_XDECREF(total);
    Py_XDECREF(size);
    if (sum == NULL)
        return -1;
    Py_XSETREF(self->sent, sum);
    return 0;
}

/*
 * send_whole(body): render the whole response with the HTTP core's render_whole, which
 * also says whether the connection is kept after it, and send it through the sink; when
 * render_whole declines (or a member it needs is unset), _send_whole.
 */
static PyObject *
core_send_whole(ExchangeCore *self, PyTypeObject *cls, PyObject *const *args,
                Py_ssize_t nargs, PyObject *kwnames)
{
    wsgi_state *st = (wsgi_state *)PyType_GetModuleState(cls);
    if (nargs != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "send_whole(body)");
        return NULL;
    }
    PyObject *body = args[0];
    if (self->headers == NULL || self->headers == Py_None || self->line == NULL ||
        self->line == Py_None || self->request == NULL || self->status == NULL ||
        st->render_whole == NULL || (PyBytes_Check(body) && PyBytes_GET_SIZE(body) >= st->join_max))
        return delegate((PyObject *)self, st->s_send_whole, &body, 1);
    /* held while render_whole runs: reading the request's attributes may run Python code */
    PyObject *call[5] = {self->request, self->status, self->line, self->headers, body};
    for (int i = 0; i < 5; i++)
        Py_INCREF(call[i]);
    PyObject *whole = PyObject_Vectorcall(st->render_whole, call, 5, NULL);
    for (int i = 0; i < 5; i++)
        Py_DECREF(call[i]);
    if (whole == NULL)
        return NULL;
    if (whole == Py_None) {
        Py_DECREF(whole);
        return delegate((PyObject *)self, st->s_send_whole, &body, 1);
    }
    if (!PyTuple_CheckExact(whole) || PyTuple_GET_SIZE(whole) != 2 ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(whole, 0))) {
        Py_DECREF(whole);
        PyErr_SetString(PyExc_TypeError, "render_whole returns (bytes, keep_alive) or None");
        return NULL;
    }
    int failed = settle_whole(st, self, PyTuple_GET_ITEM(whole, 0), PyTuple_GET_ITEM(whole, 1));
    Py_DECREF(whole);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef core_methods[] = {
    {"start_response", (PyCFunction)(void (*)(void))core_start_response,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "PEP 3333 start_response (the plain case; see _wsgi.c)."},
    {"send_whole", (PyCFunction)(void (*)(void))core_send_whole,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "Send a response whose body is known in full (the plain case; see _wsgi.c)."},
    {NULL, NULL, 0, NULL},
};

#define MEMBER(name) {#name, T_OBJECT_EX, offsetof(ExchangeCore, name), 0, NULL}
static PyMemberDef core_members[] = {
    MEMBER(request), MEMBER(sink), MEMBER(request_id), MEMBER(remote),
    MEMBER(status), MEMBER(reason), MEMBER(line), MEMBER(headers),
    MEMBER(framer), MEMBER(keep_alive_whole), MEMBER(sent), MEMBER(keep_alive),
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot core_slots[] = {
    {Py_tp_doc, "The state of one WSGI exchange, and the common case of its hot methods."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, core_init},
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_traverse, core_traverse},
    {Py_tp_clear, core_clear},
    {Py_tp_methods, core_methods},
    {Py_tp_members, core_members},
    {0, NULL},
};

static PyType_Spec core_spec = {
    .name = "threadloom.interfaces._wsgi.ExchangeCore",
    .basicsize = sizeof(ExchangeCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = core_slots,
};

/* bind_environ(keys, key_of): the header-name -> environ-key cache and wsgi.py's _env_key,
   which makes (and caches) the key of a name the cache lacks. */
static PyObject *
bind_environ(PyObject *module, PyObject *args)
{
    PyObject *keys, *key_of;
    if (!PyArg_ParseTuple(args, "O!O", &PyDict_Type, &keys, &key_of))
        return NULL;
    if (!PyCallable_Check(key_of)) {
        PyErr_SetString(PyExc_TypeError, "bind_environ: key_of must be callable");
        return NULL;
    }
    wsgi_state *st = state_of(module);
    Py_XSETREF(st->keys, Py_NewRef(keys));
    Py_XSETREF(st->key_of, Py_NewRef(key_of));
    Py_RETURN_NONE;
}

/* bind_exchange(statuses, render_whole, join_max): what ExchangeCore's fast paths consult. */
static PyObject *
bind_exchange(PyObject *module, PyObject *args)
{
    PyObject *cache, *render;
    Py_ssize_t largest;
    if (!PyArg_ParseTuple(args, "O!On", &PyDict_Type, &cache, &render, &largest))
        return NULL;
    wsgi_state *st = state_of(module);
    st->join_max = largest;
    Py_XSETREF(st->statuses, Py_NewRef(cache));
    Py_XSETREF(st->render_whole, render == Py_None ? NULL : Py_NewRef(render));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"environ", (PyCFunction)(void (*)(void))build_environ, METH_FASTCALL,
     "The PEP 3333 environ of one request (see wsgi.py)."},
    {"bind_environ", bind_environ, METH_VARARGS,
     "Bind the header-name cache and the function that makes a missing environ key."},
    {"bind_exchange", bind_exchange, METH_VARARGS,
     "Bind the status cache, render_whole and join_max that ExchangeCore's fast paths use."},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *module)
{
    wsgi_state *st = state_of(module);
#define INTERN(name, text)                                                                     \
    if ((st->name = PyUnicode_InternFromString(text)) == NULL)                                \
        return -1;
    WSGI_STRINGS(INTERN)
#undef INTERN
    st->join_max = PY_SSIZE_T_MAX;
    st->zero = PyLong_FromLong(0);
    if (st->zero == NULL)
        return -1;
    st->core_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &core_spec, NULL);
    if (st->core_type == NULL)
        return -1;
    return PyModule_AddObjectRef(module, "ExchangeCore", (PyObject *)st->core_type);
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    wsgi_state *st = state_of(module);
    Py_VISIT(st->core_type);
    Py_VISIT(st->keys);
    Py_VISIT(st->key_of);
    Py_VISIT(st->statuses);
    Py_VISIT(st->render_whole);
    return 0;
}

static int
module_clear(PyObject *module)
{
    wsgi_state *st = state_of(module);
#define CLEAR(name, text) Py_CLEAR(st->name);
    WSGI_STRINGS(CLEAR)
#undef CLEAR
    Py_CLEAR(st->zero);
    Py_CLEAR(st->core_type);
    Py_CLEAR(st->keys);
    Py_CLEAR(st->key_of);
    Py_CLEAR(st->statuses);
    Py_CLEAR(st->render_whole);
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
    .m_name = "threadloom.interfaces._wsgi",
    .m_doc = "The WSGI hot path in C (see _wsgi.c).",
    .m_size = sizeof(wsgi_state),
    .m_methods = methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__wsgi(void)
{
    return PyModuleDef_Init(&module_def);
}
