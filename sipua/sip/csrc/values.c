/* Typed header values of the common shape: URIs, Via, name-addr, CSeq (see message.c).
 *
 * Each parser returns a new instance of the Python class, or NULL: with an exception set
 * on memory errors, without one when the text is not of the shape handled here (the
 * Python parser then decides, and words any error).
 */
#include "speedups.h"

unsigned char cls[256];
ClassInfo ci_via, ci_name_addr, ci_sip_uri, ci_cseq;
PyObject *method_obj[N_METHODS];
const char *method_txt[N_METHODS] = {
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK",
    "UPDATE", "INFO", "REFER", "NOTIFY", "SUBSCRIBE", "MESSAGE", "PUBLISH",
};
PyObject *pname_obj[N_PNAMES];
const char *pname_txt[N_PNAMES] = {"branch", "rport", "tag", "transport", "lr", "received"};
PyObject *s_version, *s_sip, *s_sips, *s_udp_proto;

void
init_classes(void)
{
    const char *p;
    int c;
    for (c = 0; c < 256; c++) {
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        unsigned char v = 0;
        if (alnum)
            v |= C_TOKEN | C_PCHAR | C_USER | C_HOST;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
            c == ':' || c == '.')
            v |= C_HEX6;
        if (c > 0x20 && c < 0x7f && !strchr(";\"<>=,", c))
            v |= C_PVAL;
        if (((c >= 0x20 && c < 0x7f) || c == '\t') && c != '"' && c != '\\')
            v |= C_QDISP;
        if (c < 0x20 || c >= 0x7f)
            v |= C_ODD;
        cls[c] = v;
    }
    for (p = "-.!%*_+`'~"; *p; p++)
        cls[(unsigned char)*p] |= C_TOKEN;
    for (p = "-.!~*'()%[]/:&+$_"; *p; p++)
        cls[(unsigned char)*p] |= C_PCHAR;
    /* RFC 3261 user: unreserved / escaped / user-unreserved (&=+$,;?/) */
    for (p = "-_.!~*'()%&=+$,;?/"; *p; p++)
        cls[(unsigned char)*p] |= C_USER;
    for (p = ".-_"; *p; p++)
        cls[(unsigned char)*p] |= C_HOST;
}


PyObject *
lower_name(const char *p, Py_ssize_t n)
{
    int i;
    char buf[32];
    Py_ssize_t k;
    if (n < (Py_ssize_t)sizeof buf) {
        for (k = 0; k < n; k++) {
            char c = p[k];
            buf[k] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        for (i = 0; i < N_PNAMES; i++) {
            if ((Py_ssize_t)strlen(pname_txt[i]) == n && memcmp(pname_txt[i], buf, (size_t)n) == 0) {
                Py_INCREF(pname_obj[i]);
                return pname_obj[i];
            }
        }
        return ascii_str(buf, n);
    }
    else {
        PyObject *s = ascii_str(p, n);
        if (s != NULL) {
            char *d = (char *)PyUnicode_DATA(s);
            for (k = 0; k < n; k++)
                if (d[k] >= 'A' && d[k] <= 'Z')
                    d[k] = (char)(d[k] + 32);
        }
        return s;
    }
}

/* -- parameters -------------------------------------------------------------------- */

/* ";name[=value]"* up to end, names and values of the given classes. Returns a new dict,
 * or NULL with no exception set when the text is not of that shape (or with an exception
 * set on memory errors). */
PyObject *
parse_params(const char *p, const char *end, int name_class, int value_class)
{
    PyObject *params = PyDict_New();
    if (params == NULL)
        return NULL;
    while (p < end) {
        const char *n0, *v0;
        PyObject *name, *value;
        if (*p != ';')
            goto fail;
        n0 = ++p;
        while (p < end && IS(*p, name_class))
            p++;
        if (p == n0)
            goto fail;
        name = lower_name(n0, p - n0);
        if (name == NULL)
            goto error;
        if (p < end && *p == '=') {
            v0 = ++p;
            while (p < end && IS(*p, value_class))
                p++;
            if (p == v0) {
                Py_DECREF(name);
                goto fail;
            }
            value = ascii_str(v0, p - v0);
            if (value == NULL) {
                Py_DECREF(name);
                goto error;
            }
        }
        else {
            value = Py_None;
            Py_INCREF(value);
        }
        if (PyDict_SetItem(params, name, value) < 0) {
            Py_DECREF(name);
            Py_DECREF(value);
            goto error;
        }
        Py_DECREF(name);
        Py_DECREF(value);
    }
    return params;
fail:
    Py_DECREF(params);
    return NULL;
error:
    Py_DECREF(params);
    return NULL;
}

/* -- URIs -------------------------------------------------------------------------- */

/* host, optional port: returns the end of the port, or NULL. */
static const char *
scan_hostport(const char *p, const char *end, int host_first_class, const char **host_end,
              long *port)
{
    const char *h = p;
    *port = -1;
    if (p < end && *p == '[') {
        p++;
        while (p < end && IS(*p, C_HEX6))
            p++;
        if (p == h + 1 || p >= end || *p != ']')
            return NULL;
        p++;
    }
    else {
        if (p >= end || !IS(*p, host_first_class))
            return NULL;
        p++;
        while (p < end && IS(*p, C_HOST))
            p++;
    }
    *host_end = p;
    if (p < end && *p == ':') {
        const char *d = ++p;
        long v = 0;
        while (p < end && *p >= '0' && *p <= '9' && p - d < 6) {
            v = v * 10 + (*p - '0');
            p++;
        }
        if (p == d || p - d > 5 || v > 65535)
            return NULL;
        if (p < end && *p >= '0' && *p <= '9')
            return NULL;
        *port = v;
    }
    return p;
}

static int
is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A sip:/sips: URI filling [p, end) exactly, without URI headers. New SipUri or NULL
 * (no exception: not of the common shape). */
PyObject *
parse_sip_uri(const char *p, const char *end)
{
    const char *start = p, *user0 = NULL, *user1 = NULL, *pw0 = NULL, *pw1 = NULL;
    const char *host0, *host1, *q, *at;
    PyObject *scheme, *uri, *v;
    long port;

    if (end - p >= 4 && memcmp(p, "sip:", 4) == 0) {
        scheme = s_sip;
        p += 4;
    }
    else if (end - p >= 5 && memcmp(p, "sips:", 5) == 0) {
        scheme = s_sips;
        p += 5;
    }
    else
        return NULL;
    at = memchr(p, '@', (size_t)(end - p));
    if (at != NULL) {
        q = p;
        while (q < at && IS(*q, C_USER))
            q++;
        if (q == p)
            return NULL;
        user0 = p;
        user1 = q;
        if (q < at) {
            if (*q != ':')
                return NULL;
            pw0 = ++q;
            while (q < at && (IS(*q, C_USER) || *q == ':'))
                q++;
            if (q != at)
                return NULL;
            pw1 = q;
        }
        p = at + 1;
    }
    host0 = p;
    /* uri.py: host = \[...\] | [A-Za-z0-9][A-Za-z0-9.\-_]* */
    if (p < end && *p != '[' && !is_alnum(*p))
        return NULL;
    p = scan_hostport(p, end, C_HOST, &host1, &port);
    if (p == NULL)
        return NULL;
    /* parameters: everything else up to the end (no '?headers' here) */
    q = p;
    while (q < end && *q != '?')
        q++;
    if (q != end)
        return NULL;
    uri = new_instance(&ci_sip_uri);
    if (uri == NULL)
        return NULL;
    if (p < end) {
        v = parse_params(p, end, C_PCHAR, C_PCHAR);
        if (v == NULL) {
            Py_DECREF(uri);
            return NULL;
        }
    }
    else {
        v = PyDict_New();
        if (v == NULL)
            goto error;
    }
    set_slot(uri, ci_sip_uri.off[U_PARAMS], v);
    Py_INCREF(scheme);
    set_slot(uri, ci_sip_uri.off[U_SCHEME], scheme);
    if ((v = opt_str(user0, user1)) == NULL)
        goto error;
    set_slot(uri, ci_sip_uri.off[U_USER], v);
    if ((v = opt_str(pw0, pw1)) == NULL)
        goto error;
    set_slot(uri, ci_sip_uri.off[U_PASSWORD], v);
    if ((v = ascii_str(host0, host1 - host0)) == NULL)
        goto error;
    set_slot(uri, ci_sip_uri.off[U_HOST], v);
    if ((v = opt_port(port)) == NULL)
        goto error;
    set_slot(uri, ci_sip_uri.off[U_PORT], v);
    Py_INCREF(Py_None);
    set_slot(uri, ci_sip_uri.off[U_HEADERS], Py_None);
    if ((v = ascii_str(start, end - start)) == NULL)
        goto error;
    set_slot(uri, ci_sip_uri.off[U_TEXT], v);
    return uri;
error:
    Py_DECREF(uri);
    return NULL;
}

/* -- header values ----------------------------------------------------------------- */

/* The caller passes the value's text object too, kept as _text. */
PyObject *
parse_via(PyObject *text)
{
    const char *p = (const char *)PyUnicode_DATA(text);
    const char *end = p + PyUnicode_GET_LENGTH(text);
    const char *t0, *t1, *host0, *host1;
    PyObject *via, *v;
    long port;
    char tbuf[16];
    Py_ssize_t k;

    if (end - p < 8 || memcmp(p, "SIP/2.0/", 8) != 0)
        return NULL;
    t0 = p += 8;
    while (p < end && IS(*p, C_TOKEN))
        p++;
    t1 = p;
    if (t1 == t0 || t1 - t0 >= (Py_ssize_t)sizeof tbuf || p >= end || *p != ' ')
        return NULL;
    p++;
    host0 = p;
    p = scan_hostport(p, end, C_HOST, &host1, &port);
    if (p == NULL)
        return NULL;
    via = new_instance(&ci_via);
    if (via == NULL)
        return NULL;
    v = parse_params(p, end, C_TOKEN, C_PVAL);
    if (v == NULL) {
        Py_DECREF(via);
        return NULL;
    }
    set_slot(via, ci_via.off[V_PARAMS], v);
    for (k = 0; k < t1 - t0; k++) {
        char c = t0[k];
        tbuf[k] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    if (t1 - t0 == 3 && memcmp(tbuf, "UDP", 3) == 0) {
        v = s_udp_proto;
        Py_INCREF(v);
    }
    else if ((v = ascii_str(tbuf, t1 - t0)) == NULL)
        goto error;
    set_slot(via, ci_via.off[V_TRANSPORT], v);
    Py_INCREF(s_version);
    set_slot(via, ci_via.off[V_PROTOCOL], s_version);
    if ((v = ascii_str(host0, host1 - host0)) == NULL)
        goto error;
    set_slot(via, ci_via.off[V_HOST], v);
    if ((v = opt_port(port)) == NULL)
        goto error;
    set_slot(via, ci_via.off[V_PORT], v);
    Py_INCREF(text);
    set_slot(via, ci_via.off[V_TEXT], text);
    return via;
error:
    Py_DECREF(via);
    return NULL;
}

/* A NameAddr of these parts; steals uri_text, uri, display and params (each may be NULL
 * only on an earlier error, then the rest are released and NULL returned). */
static PyObject *
new_name_addr(PyObject *text, PyObject *display, PyObject *uri_text, PyObject *uri,
              PyObject *params, int bracketed)
{
    PyObject *na;
    if (display == NULL || uri_text == NULL || uri == NULL || params == NULL ||
        (na = new_instance(&ci_name_addr)) == NULL) {
        Py_XDECREF(display);
        Py_XDECREF(uri_text);
        Py_XDECREF(uri);
        Py_XDECREF(params);
        return NULL;
    }
    set_slot(na, ci_name_addr.off[N_DISPLAY], display);
    set_slot(na, ci_name_addr.off[N_URI_TEXT], uri_text);
    set_slot(na, ci_name_addr.off[N_URI], uri);
    set_slot(na, ci_name_addr.off[N_PARAMS], params);
    set_slot(na, ci_name_addr.off[N_BRACKETED], Py_NewRef(bracketed ? Py_True : Py_False));
    set_slot(na, ci_name_addr.off[N_TEXT], Py_NewRef(text));
    return na;
}

/* ``sip:...;params`` without <>: the URI is left to parse when used, as headers.py does for
 * this form; values with characters that form would refuse or treat specially are declined. */
static PyObject *
parse_addr_spec(PyObject *text, const char *p, const char *end)
{
    const char *q, *semi = NULL;
    PyObject *params;
    for (q = p; q < end; q++) {
        if (strchr(" \t<>\"?,", *q) != NULL || *q == '\0')
            return NULL;
        if (*q == ';' && semi == NULL)
            semi = q;
    }
    if (semi == NULL)
        semi = end;
    params = parse_params(semi, end, C_TOKEN, C_PVAL);
    if (params == NULL)
        return NULL;
    return new_name_addr(text, Py_NewRef(Py_None), ascii_str(p, semi - p), Py_NewRef(Py_None),
                         params, 0);
}

PyObject *
parse_name_addr(PyObject *text)
{
    const char *p = (const char *)PyUnicode_DATA(text);
    const char *end = p + PyUnicode_GET_LENGTH(text);
    const char *d0 = NULL, *d1 = NULL, *u0, *u1;
    PyObject *uri, *uri_text, *params;

    if ((end - p > 4 && memcmp(p, "sip:", 4) == 0) || (end - p > 5 && memcmp(p, "sips:", 5) == 0))
        return parse_addr_spec(text, p, end);
    if (p < end && *p == '"') {
        d0 = ++p;
        while (p < end && IS(*p, C_QDISP))
            p++;
        if (p >= end || *p != '"')
            return NULL;
        d1 = p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
    }
    else if (p < end && *p != '<') {
        d0 = p;
        for (;;) {
            const char *t = p;
            while (p < end && IS(*p, C_TOKEN))
                p++;
            if (p == t)
                return NULL;
            d1 = p;
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            if (p < end && *p == '<')
                break;
            if (p == d1) /* no whitespace after the token and no '<' */
                return NULL;
        }
    }
    if (p >= end || *p != '<')
        return NULL;
    u0 = ++p;
    while (p < end && *p != '>')
        p++;
    if (p >= end)
        return NULL;
    u1 = p++;
    uri = parse_sip_uri(u0, u1);
    if (uri == NULL)
        return NULL;
    params = parse_params(p, end, C_TOKEN, C_PVAL);
    if (params == NULL) {
        Py_DECREF(uri);
        return NULL;
    }
    /* the URI's text object is the uri_text */
    uri_text = Py_NewRef(*(PyObject **)((char *)uri + ci_sip_uri.off[U_TEXT]));
    return new_name_addr(text, opt_str(d0, d1), uri_text, uri, params, 1);
}

PyObject *
match_method(const char *p, Py_ssize_t n)
{
    int i;
    for (i = 0; i < N_METHODS; i++) {
        if ((Py_ssize_t)strlen(method_txt[i]) == n && memcmp(method_txt[i], p, (size_t)n) == 0)
            return method_obj[i];
    }
    return NULL;
}

PyObject *
parse_cseq(PyObject *text)
{
    const char *p = (const char *)PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), k;
    long seq = 0;
    PyObject *method, *cseq, *v;
    for (k = 0; k < n && k < 10 && p[k] >= '0' && p[k] <= '9'; k++)
        seq = seq * 10 + (p[k] - '0');
    if (k == 0 || k >= 10 || k >= n || p[k] != ' ')
        return NULL;
    method = match_method(p + k + 1, n - k - 1);
    if (method == NULL)
        return NULL;
    cseq = new_instance(&ci_cseq);
    if (cseq == NULL)
        return NULL;
    if ((v = PyLong_FromLong(seq)) == NULL) {
        Py_DECREF(cseq);
        return NULL;
    }
    set_slot(cseq, ci_cseq.off[S_SEQ], v);
    Py_INCREF(method);
    set_slot(cseq, ci_cseq.off[S_METHOD], method);
    return cseq;
}
