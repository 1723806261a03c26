/* Shared declarations of the compiled SIP parser fast path (see message.c). */
#ifndef SIPUA_SPEEDUPS_H
#define SIPUA_SPEEDUPS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* -- character classes ------------------------------------------------------------ */

enum {
    C_TOKEN = 1,     /* RFC 3261 token: alphanum - . ! % * _ + ` ' ~ */
    C_PCHAR = 2,     /* URI parameter characters (uri.py _PCHAR) */
    C_USER = 4,      /* user / password characters accepted here (a subset of uri.py's) */
    C_HOST = 8,      /* A-Za-z0-9 . - _ */
    C_HEX6 = 16,     /* inside IPv6 brackets: hex digits, ':' and '.' */
    C_PVAL = 32,     /* header parameter values (headers.py _SIMPLE_PARAMS, printable subset) */
    C_QDISP = 64,    /* inside a quoted display name: printable, no '"' or '\\' */
    C_ODD = 128,     /* not printable ASCII: needs a look in a header section */
};

extern unsigned char cls[256];
#define IS(c, k) (cls[(unsigned char)(c)] & (k))

/* -- the Python classes filled in ------------------------------------------------- */

typedef struct {
    PyTypeObject *type;
    Py_ssize_t off[10];
} ClassInfo;

/* slot indices per class */
enum { R_FIELDS, R_BODY, R_CONTEXT, R_INDEX, R_CACHE, R_A, R_B, R_VERSION }; /* Request/Response */
enum { V_PROTOCOL, V_TRANSPORT, V_HOST, V_PORT, V_PARAMS, V_TEXT };
enum { N_DISPLAY, N_URI_TEXT, N_PARAMS, N_BRACKETED, N_URI, N_TEXT };
enum { U_SCHEME, U_USER, U_PASSWORD, U_HOST, U_PORT, U_PARAMS, U_HEADERS, U_TEXT };
enum { S_SEQ, S_METHOD };

extern ClassInfo ci_via, ci_name_addr, ci_sip_uri, ci_cseq;

#define N_METHODS 14
extern PyObject *method_obj[N_METHODS];
extern const char *method_txt[N_METHODS];
#define N_PNAMES 6
extern PyObject *pname_obj[N_PNAMES];
extern const char *pname_txt[N_PNAMES];
extern PyObject *s_version, *s_sip, *s_sips, *s_udp_proto;

static inline int
set_slot(PyObject *obj, Py_ssize_t off, PyObject *value) /* steals value */
{
    PyObject **slot = (PyObject **)((char *)obj + off);
    PyObject *old = *slot;
    *slot = value;
    Py_XDECREF(old);
    return 0;
}

static inline PyObject *
new_instance(ClassInfo *ci)
{
    return ci->type->tp_alloc(ci->type, 0);
}

static inline PyObject *
ascii_str(const char *p, Py_ssize_t n)
{
    PyObject *s = PyUnicode_New(n, 127);
    if (s != NULL)
        memcpy(PyUnicode_DATA(s), p, (size_t)n);
    return s;
}

/* ascii_str(p0, p1 - p0), or a new reference to None when p0 is NULL */
static inline PyObject *
opt_str(const char *p0, const char *p1)
{
    if (p0 == NULL)
        Py_RETURN_NONE;
    return ascii_str(p0, p1 - p0);
}

/* the port as an int, or None when it is negative (absent) */
static inline PyObject *
opt_port(long port)
{
    if (port < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(port);
}

/* values.c */
void init_classes(void);
PyObject *lower_name(const char *p, Py_ssize_t n);
PyObject *parse_params(const char *p, const char *end, int name_class, int value_class);
PyObject *parse_sip_uri(const char *p, const char *end);
PyObject *parse_via(PyObject *text);
PyObject *parse_name_addr(PyObject *text);
PyObject *match_method(const char *p, Py_ssize_t n);
PyObject *parse_cseq(PyObject *text);

#endif
