"""The compiled fast path of the SIP parser (sipua/sip/csrc/, module sipua.sip._speedups).

Everything else is in pyproject.toml. The extension is optional: where it cannot be built,
sipua runs on the pure-Python parser, which accepts and rejects exactly the same messages.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sipua.sip._speedups",
            ["sipua/sip/csrc/message.c", "sipua/sip/csrc/values.c"],
            depends=["sipua/sip/csrc/speedups.h"],
            extra_compile_args=["-fvisibility=hidden"],
            optional=True,
        )
    ]
)
