/*
 * threadloom.interfaces._wsgi: WSGIRunner.environ in C (see interfaces/wsgi.py).
 *
 * Why: building the environ was the largest single piece of a small WSGI request's Python
 * time (a dict copy, a dozen stores, three decodes and a loop over the header fields).
 * This does exactly what WSGIRunner._environ_py does, and tests/protocols/test_speedups.py
 * compares the two on generated requests. Optional like the HTTP core's extension: when it
 * is missing, or THREADLOOM_PURE_PYTHON=1, the Python version runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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
build_environ(PyObject *self, PyObject *args)
{
    PyObject *template, *request, *body, *client, *keys;
    if (!PyArg_ParseTuple(args, "O!OOOO!", &PyDict_Type, &template, &request, &body, &client,
                          &PyDict_Type, &keys))
        return NULL;
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

static PyMethodDef methods[] = {
    {"environ", build_environ, METH_VARARGS, "The PEP 3333 environ of one request (see wsgi.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "threadloom.interfaces._wsgi",
    "WSGIRunner.environ in C (see _wsgi.c).", -1, methods,
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
    return PyModule_Create(&module);
}
