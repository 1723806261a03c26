/* Compiled fast path of sipua.sip.message: parse the common shape of a SIP message.
 *
 * This module recognises a strict subset of what the pure-Python parser accepts: ASCII
 * header sections with CRLF line ends, no line folding, a Request-Line whose method is a
 * common one and whose Request-URI is a plain sip:/sips: URI, or a SIP/2.0 Status-Line;
 * and it parses, at the same time, the typed values the stack reads on every message
 * (the single Via, From, To, Call-ID, CSeq and Contact, Content-Length) when their values
 * have the common shape. Anything outside that subset makes it return None, and the
 * Python parser (sipua/sip/message.py) then handles the message, including every error.
 *
 * So for every input, either this module returns None, or it returns exactly the message
 * (same classes, same field values, same cached typed values) that the Python path
 * builds. tests/sip/test_speedups.py checks that equivalence on the conformance corpus
 * and on generated messages.
 *
 * The objects are instances of the Python classes (Request, Response, Via, NameAddr,
 * SipUri, CSeq), whose __slots__ are filled through their member descriptors' offsets;
 * setup() receives the classes and checks every slot exists.
 *
 * The typed values are parsed in values.c; this file frames the message and builds it.
 */
#include "speedups.h"

static ClassInfo ci_request, ci_response;
static PyObject *key_cache;      /* headers._key_cache: name as written -> key */
static PyObject *header_key_fn;  /* headers.header_key: validates and caches a new name */
static int ready;
static PyObject *s_empty_bytes;
static PyObject *k_via, *k_from, *k_to, *k_call_id, *k_cseq, *k_contact, *k_content_length;

/* -- the message ------------------------------------------------------------------- */

static int lookup_name(const char *p, Py_ssize_t n, PyObject **name_out, PyObject **key_out);

static PyObject *
single(PyObject *index, PyObject *key)
{
    PyObject *lst = PyDict_GetItem(index, key);
    if (lst == NULL || PyList_GET_SIZE(lst) != 1)
        return NULL;
    return PyList_GET_ITEM(lst, 0);
}

/* cache[key] = v (or [v] when as_list), stealing v; a NULL v with no exception set is a value
 * not of the common shape, left for the lazy Python accessor (which words its error). */
static int
cache_value(PyObject *cache, PyObject *key, PyObject *v, int as_list)
{
    int rc;
    if (v == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (as_list) {
        PyObject *lst = PyList_New(1);
        if (lst == NULL) {
            Py_DECREF(v);
            return -1;
        }
        PyList_SET_ITEM(lst, 0, v);
        v = lst;
    }
    rc = PyDict_SetItem(cache, key, v);
    Py_DECREF(v);
    return rc;
}

static int
no_comma(PyObject *raw)
{
    return PyUnicode_FindChar(raw, ',', 0, PyUnicode_GET_LENGTH(raw), 1) == -1;
}

/* Parse what can be parsed of the typed values into the message's cache, as the Python
 * accessors would: one Via or Contact line without commas, one From, To, Call-ID, CSeq. */
static int
prefill(PyObject *index, PyObject *cache)
{
    PyObject *raw;
    if ((raw = single(index, k_via)) != NULL && no_comma(raw) &&
        cache_value(cache, k_via, parse_via(raw), 1) < 0)
        return -1;
    if ((raw = single(index, k_from)) != NULL &&
        cache_value(cache, k_from, parse_name_addr(raw), 0) < 0)
        return -1;
    if ((raw = single(index, k_to)) != NULL &&
        cache_value(cache, k_to, parse_name_addr(raw), 0) < 0)
        return -1;
    if ((raw = single(index, k_call_id)) != NULL) {
        const char *p = (const char *)PyUnicode_DATA(raw);
        Py_ssize_t n = PyUnicode_GET_LENGTH(raw), k;
        for (k = 0; k < n && p[k] > ' ' && p[k] <= '~'; k++)
            ;
        if (n > 0 && k == n && PyDict_SetItem(cache, k_call_id, raw) < 0)
            return -1;
    }
    if ((raw = single(index, k_cseq)) != NULL &&
        cache_value(cache, k_cseq, parse_cseq(raw), 0) < 0)
        return -1;
    if ((raw = single(index, k_contact)) != NULL && no_comma(raw) &&
        cache_value(cache, k_contact, parse_name_addr(raw), 1) < 0)
        return -1;
    return 0;
}

/* The header section [p, end): start line, fields, index. Returns the message with an
 * empty body, or NULL (exception set on errors, none when the shape is not the common one). */
static PyObject *
build_head(const char *p, const char *end)
{
    const char *line_end, *s1, *s2;
    PyObject *msg = NULL, *fields = NULL, *index = NULL, *cache = NULL;
    ClassInfo *ci;
    Py_ssize_t k;

    for (k = 0; k < end - p; k++) {
        unsigned char c;
        if (k + 8 <= end - p && (k & 7) == 0) {
            /* eight octets at a time: skip words with no octet < 0x20 or >= 0x80 */
            uint64_t w;
            memcpy(&w, p + k, 8);
            if (((w - 0x2020202020202020ull) | w) & 0x8080808080808080ull)
                goto bytewise;
            k += 7;
            continue;
        }
    bytewise:
        c = (unsigned char)p[k];
        if (cls[c] & C_ODD) {
            /* CR only before LF, LF only after CR; no other control or non-ASCII octet */
            if (c == '\r' && k + 1 < end - p && p[k + 1] == '\n')
                continue;
            if (c == '\n' && k > 0 && p[k - 1] == '\r')
                continue;
            if (c == '\t')
                continue;
            return NULL;
        }
    }
    line_end = memchr(p, '\r', (size_t)(end - p));
    if (line_end == NULL)
        line_end = end;

    if (line_end - p >= 8 && memcmp(p, "SIP/2.0 ", 8) == 0) {
        const char *c = p + 8;
        int code;
        PyObject *v;
        if (line_end - c < 3 || c[0] < '1' || c[0] > '6' || c[1] < '0' || c[1] > '9' ||
            c[2] < '0' || c[2] > '9')
            return NULL;
        code = (c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0');
        if (line_end - c > 3 && c[3] != ' ')
            return NULL;
        ci = &ci_response;
        msg = new_instance(ci);
        if (msg == NULL)
            return NULL;
        if ((v = PyLong_FromLong(code)) == NULL)
            goto error;
        set_slot(msg, ci->off[R_A], v);
        v = line_end - c > 3 ? ascii_str(c + 4, line_end - c - 4) : PyUnicode_New(0, 127);
        if (v == NULL)
            goto error;
        set_slot(msg, ci->off[R_B], v);
    }
    else {
        PyObject *method, *uri;
        s1 = memchr(p, ' ', (size_t)(line_end - p));
        if (s1 == NULL)
            return NULL;
        s2 = memchr(s1 + 1, ' ', (size_t)(line_end - s1 - 1));
        if (s2 == NULL || line_end - s2 - 1 != 7 || memcmp(s2 + 1, "SIP/2.0", 7) != 0)
            return NULL;
        method = match_method(p, s1 - p);
        if (method == NULL)
            return NULL;
        uri = parse_sip_uri(s1 + 1, s2);
        if (uri == NULL)
            return NULL;
        ci = &ci_request;
        msg = new_instance(ci);
        if (msg == NULL) {
            Py_DECREF(uri);
            return NULL;
        }
        set_slot(msg, ci->off[R_B], uri);
        Py_INCREF(method);
        set_slot(msg, ci->off[R_A], method);
    }
    Py_INCREF(s_version);
    set_slot(msg, ci->off[R_VERSION], s_version);

    fields = PyList_New(0);
    index = PyDict_New();
    cache = PyDict_New();
    if (fields == NULL || index == NULL || cache == NULL)
        goto error;
    p = line_end + 2;
    while (p < end) {
        const char *colon, *v0, *v1;
        PyObject *name, *key, *value, *entry, *lst;
        line_end = memchr(p, '\r', (size_t)(end - p));
        if (line_end == NULL)
            line_end = end;
        if (*p == ' ' || *p == '\t' || line_end == p)
            goto fallback; /* folding or a blank line: the Python parser's business */
        colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon == NULL)
            goto fallback;
        if (lookup_name(p, colon - p, &name, &key) < 0) {
            if (PyErr_Occurred())
                goto error;
            goto fallback;
        }
        v0 = colon + 1;
        v1 = line_end;
        while (v0 < v1 && (*v0 == ' ' || *v0 == '\t'))
            v0++;
        while (v1 > v0 && (v1[-1] == ' ' || v1[-1] == '\t'))
            v1--;
        value = ascii_str(v0, v1 - v0);
        if (value == NULL) {
            Py_DECREF(name);
            Py_DECREF(key);
            goto error;
        }
        entry = PyTuple_New(3);
        if (entry == NULL) {
            Py_DECREF(name);
            Py_DECREF(key);
            Py_DECREF(value);
            goto error;
        }
        Py_INCREF(key);
        Py_INCREF(value);
        PyTuple_SET_ITEM(entry, 0, key);
        PyTuple_SET_ITEM(entry, 1, name);
        PyTuple_SET_ITEM(entry, 2, value);
        if (PyList_Append(fields, entry) < 0) {
            Py_DECREF(entry);
            Py_DECREF(key);
            Py_DECREF(value);
            goto error;
        }
        Py_DECREF(entry);
        lst = PyDict_GetItemWithError(index, key);
        if (lst != NULL) {
            if (PyList_Append(lst, value) < 0) {
                Py_DECREF(key);
                Py_DECREF(value);
                goto error;
            }
        }
        else if (PyErr_Occurred()) {
            Py_DECREF(key);
            Py_DECREF(value);
            goto error;
        }
        else {
            lst = PyList_New(1);
            if (lst == NULL) {
                Py_DECREF(key);
                Py_DECREF(value);
                goto error;
            }
            Py_INCREF(value);
            PyList_SET_ITEM(lst, 0, value);
            if (PyDict_SetItem(index, key, lst) < 0) {
                Py_DECREF(lst);
                Py_DECREF(key);
                Py_DECREF(value);
                goto error;
            }
            Py_DECREF(lst);
        }
        Py_DECREF(key);
        Py_DECREF(value);
        p = line_end + 2;
    }
    if (prefill(index, cache) < 0)
        goto error;
    set_slot(msg, ci->off[R_FIELDS], fields);
    set_slot(msg, ci->off[R_INDEX], index);
    set_slot(msg, ci->off[R_CACHE], cache);
    Py_INCREF(Py_None);
    set_slot(msg, ci->off[R_CONTEXT], Py_None);
    Py_INCREF(s_empty_bytes);
    set_slot(msg, ci->off[R_BODY], s_empty_bytes);
    return msg;
fallback:
    Py_XDECREF(fields);
    Py_XDECREF(index);
    Py_XDECREF(cache);
    Py_DECREF(msg);
    return NULL;
error:
    Py_XDECREF(fields);
    Py_XDECREF(index);
    Py_XDECREF(cache);
    Py_XDECREF(msg);
    return NULL;
}

/* Header names as written -> (name, key) objects, so the usual names cost no string, hash
 * or dict lookup per message. Filled from headers._key_cache / header_key on first sight;
 * bounded (a peer inventing names fills it once, then they take the slow path). */
#define NAME_SLOTS 256
#define NAME_MAX_LEN 31
typedef struct {
    Py_ssize_t len;
    char text[NAME_MAX_LEN + 1];
    PyObject *name, *key;
} NameEntry;
static NameEntry names[NAME_SLOTS];
static int names_used;

static unsigned int
name_hash(const char *p, Py_ssize_t n)
{
    unsigned int h = 2166136261u;
    Py_ssize_t k;
    for (k = 0; k < n; k++)
        h = (h ^ (unsigned char)p[k]) * 16777619u;
    return h;
}

/* New references to the name and key of a header name, or -1 (exception set only on
 * errors; a name header_key refuses returns -1 with no exception). */
static int
lookup_name(const char *p, Py_ssize_t n, PyObject **name_out, PyObject **key_out)
{
    unsigned int h = 0, i = 0;
    int probe;
    PyObject *name, *key;
    if (n <= NAME_MAX_LEN) {
        h = name_hash(p, n);
        for (probe = 0; probe < 8; probe++) {
            NameEntry *e = &names[(h + probe) % NAME_SLOTS];
            if (e->name == NULL)
                break;
            if (e->len == n && memcmp(e->text, p, (size_t)n) == 0) {
                Py_INCREF(e->name);
                Py_INCREF(e->key);
                *name_out = e->name;
                *key_out = e->key;
                return 0;
            }
        }
        i = (h + probe) % NAME_SLOTS;
        if (probe == 8)
            i = NAME_SLOTS; /* no room on this chain */
    }
    name = ascii_str(p, n);
    if (name == NULL)
        return -1;
    key = PyDict_GetItemWithError(key_cache, name);
    if (key != NULL)
        Py_INCREF(key);
    else if (PyErr_Occurred()) {
        Py_DECREF(name);
        return -1;
    }
    else {
        key = PyObject_CallOneArg(header_key_fn, name);
        if (key == NULL) {
            /* a bad header name: the Python parser words the error */
            Py_DECREF(name);
            PyErr_Clear();
            return -1;
        }
        if (!PyUnicode_CheckExact(key)) {
            Py_DECREF(name);
            Py_DECREF(key);
            return -1;
        }
    }
    if (n <= NAME_MAX_LEN && i < NAME_SLOTS && names_used < NAME_SLOTS / 2) {
        NameEntry *e = &names[i];
        e->len = n;
        memcpy(e->text, p, (size_t)n);
        Py_INCREF(name);
        Py_INCREF(key);
        e->name = name;
        e->key = key;
        names_used++;
    }
    *name_out = name;
    *key_out = key;
    return 0;
}

static int
check_ready(void)
{
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "sipua.sip._speedups.setup() was not called");
        return -1;
    }
    return 0;
}

static PyObject *
sp_parse_head(PyObject *self, PyObject *arg)
{
    char *p;
    Py_ssize_t n;
    PyObject *msg;
    if (check_ready() < 0)
        return NULL;
    if (PyBytes_AsStringAndSize(arg, &p, &n) < 0)
        return NULL;
    if (n == 0)
        Py_RETURN_NONE;
    msg = build_head(p, p + n);
    if (msg == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return msg;
}

static PyObject *
sp_parse_datagram(PyObject *self, PyObject *arg)
{
    char *data, *head_end, *rest;
    Py_ssize_t n, rest_len, length = -1;
    PyObject *msg, *index, *cache, *lst, *body;
    if (check_ready() < 0)
        return NULL;
    if (PyBytes_AsStringAndSize(arg, &data, &n) < 0)
        return NULL;
    if (n < 4 || data[0] == '\r' || data[0] == '\n')
        Py_RETURN_NONE;
    head_end = NULL;
    {
        char *q = data, *last = data + n - 3;
        while (q < last && (q = memchr(q, '\r', (size_t)(last - q))) != NULL) {
            if (q[1] == '\n' && q[2] == '\r' && q[3] == '\n') {
                head_end = q;
                break;
            }
            q++;
        }
    }
    if (head_end == NULL || head_end == data)
        Py_RETURN_NONE;
    msg = build_head(data, head_end);
    if (msg == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    rest = head_end + 4;
    rest_len = n - (rest - data);
    index = *(PyObject **)((char *)msg + (Py_IS_TYPE(msg, ci_request.type) ? ci_request.off[R_INDEX]
                                                                          : ci_response.off[R_INDEX]));
    cache = *(PyObject **)((char *)msg + (Py_IS_TYPE(msg, ci_request.type) ? ci_request.off[R_CACHE]
                                                                          : ci_response.off[R_CACHE]));
    lst = PyDict_GetItem(index, k_content_length);
    if (lst != NULL) {
        PyObject *raw, *v;
        const char *r;
        Py_ssize_t rn, k;
        if (PyList_GET_SIZE(lst) != 1)
            goto fallback;
        raw = PyList_GET_ITEM(lst, 0);
        r = (const char *)PyUnicode_DATA(raw);
        rn = PyUnicode_GET_LENGTH(raw);
        if (rn == 0 || rn >= 10)
            goto fallback;
        length = 0;
        for (k = 0; k < rn; k++) {
            if (r[k] < '0' || r[k] > '9')
                goto fallback;
            length = length * 10 + (r[k] - '0');
        }
        if (length > rest_len)
            goto fallback;
        if ((v = PyLong_FromSsize_t(length)) == NULL)
            goto error;
        if (PyDict_SetItem(cache, k_content_length, v) < 0) {
            Py_DECREF(v);
            goto error;
        }
        Py_DECREF(v);
    }
    else
        length = rest_len;
    if ((body = PyBytes_FromStringAndSize(rest, length)) == NULL)
        goto error;
    set_slot(msg, Py_IS_TYPE(msg, ci_request.type) ? ci_request.off[R_BODY] : ci_response.off[R_BODY],
             body);
    return msg;
fallback:
    Py_DECREF(msg);
    Py_RETURN_NONE;
error:
    Py_DECREF(msg);
    return NULL;
}

/* -- setup ------------------------------------------------------------------------- */

static int
class_info(ClassInfo *ci, PyObject *type, const char *const *names, int count)
{
    int i;
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "setup() wants classes");
        return -1;
    }
    ci->type = (PyTypeObject *)type;
    for (i = 0; i < count; i++) {
        PyObject *d = PyObject_GetAttrString(type, names[i]);
        if (d == NULL)
            return -1;
        if (!Py_IS_TYPE(d, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
            Py_DECREF(d);
            PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", ((PyTypeObject *)type)->tp_name,
                         names[i]);
            return -1;
        }
        ci->off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
    }
    return 0;
}

static PyObject *
intern(const char *s)
{
    return PyUnicode_InternFromString(s);
}

static PyObject *
sp_setup(PyObject *self, PyObject *args)
{
    PyObject *request, *response, *via, *name_addr, *sip_uri, *cseq, *kc, *hk, *version;
    static const char *const req_names[] = {"fields", "body", "context", "_index", "_cache",
                                            "method", "uri", "version"};
    static const char *const resp_names[] = {"fields", "body", "context", "_index", "_cache",
                                             "status", "reason", "version"};
    static const char *const via_names[] = {"protocol", "transport", "host", "port", "params", "_text"};
    static const char *const na_names[] = {"display_name", "uri_text", "params", "bracketed", "_uri",
                                           "_text"};
    static const char *const uri_names[] = {"scheme", "user", "password", "host", "port", "params",
                                            "headers", "_text"};
    static const char *const cseq_names[] = {"seq", "method"};
    int i;

    if (!PyArg_ParseTuple(args, "OOOOOOO!OU", &request, &response, &via, &name_addr, &sip_uri,
                          &cseq, &PyDict_Type, &kc, &hk, &version))
        return NULL;
    if (class_info(&ci_request, request, req_names, 8) < 0 ||
        class_info(&ci_response, response, resp_names, 8) < 0 ||
        class_info(&ci_via, via, via_names, 6) < 0 ||
        class_info(&ci_name_addr, name_addr, na_names, 6) < 0 ||
        class_info(&ci_sip_uri, sip_uri, uri_names, 8) < 0 ||
        class_info(&ci_cseq, cseq, cseq_names, 2) < 0)
        return NULL;
    Py_INCREF(request);
    Py_INCREF(response);
    Py_INCREF(via);
    Py_INCREF(name_addr);
    Py_INCREF(sip_uri);
    Py_INCREF(cseq);
    Py_XSETREF(key_cache, Py_NewRef(kc));
    Py_XSETREF(header_key_fn, Py_NewRef(hk));
    Py_XSETREF(s_version, Py_NewRef(version));
    if (!ready) {
        for (i = 0; i < N_METHODS; i++)
            if ((method_obj[i] = intern(method_txt[i])) == NULL)
                return NULL;
        for (i = 0; i < N_PNAMES; i++)
            if ((pname_obj[i] = intern(pname_txt[i])) == NULL)
                return NULL;
        if ((s_sip = intern("sip")) == NULL || (s_sips = intern("sips")) == NULL ||
            (s_udp_proto = intern("UDP")) == NULL ||
            (s_empty_bytes = PyBytes_FromStringAndSize("", 0)) == NULL ||
            (k_via = intern("via")) == NULL || (k_from = intern("from")) == NULL ||
            (k_to = intern("to")) == NULL || (k_call_id = intern("call-id")) == NULL ||
            (k_cseq = intern("cseq")) == NULL || (k_contact = intern("contact")) == NULL ||
            (k_content_length = intern("content-length")) == NULL)
            return NULL;
    }
    ready = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", sp_setup, METH_VARARGS,
     "setup(Request, Response, Via, NameAddr, SipUri, CSeq, key_cache, header_key, version)"},
    {"parse_datagram", sp_parse_datagram, METH_O,
     "The message in a datagram, or None when it is not of the common shape."},
    {"parse_head", sp_parse_head, METH_O,
     "The message of a header section (empty body), or None when it is not of the common shape."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "Compiled fast path of sipua.sip.message for messages of the common shape.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    init_classes();
    return PyModule_Create(&module);
}
