"""Name tables the import guard uses: import names that differ from their distribution's
name, and very popular distributions (what a typosquatter imitates).

Both are short on purpose. A repository's environment (when ``setup`` built one) adds every
installed distribution's own import names (``top_level.txt``, else its ``RECORD``), so the
table only has to cover repositories without one.
"""

from __future__ import annotations

__all__ = ["KNOWN_IMPORTS", "POPULAR"]

KNOWN_IMPORTS: dict[str, tuple[str, ...]] = {
    "yaml": ("pyyaml",),
    "PIL": ("pillow",),
    "sklearn": ("scikit-learn",),
    "skimage": ("scikit-image",),
    "bs4": ("beautifulsoup4",),
    "cv2": ("opencv-python", "opencv-python-headless", "opencv-contrib-python"),
    "dateutil": ("python-dateutil",),
    "dotenv": ("python-dotenv",),
    "jwt": ("pyjwt",),
    "jose": ("python-jose",),
    "Crypto": ("pycryptodome", "pycrypto"),
    "Cryptodome": ("pycryptodomex",),
    "OpenSSL": ("pyopenssl",),
    "magic": ("python-magic",),
    "serial": ("pyserial",),
    "usb": ("pyusb",),
    "attr": ("attrs",),
    "git": ("gitpython",),
    "docx": ("python-docx",),
    "pptx": ("python-pptx",),
    "fitz": ("pymupdf",),
    "zmq": ("pyzmq",),
    "MySQLdb": ("mysqlclient",),
    "psycopg2": ("psycopg2", "psycopg2-binary"),
    "psycopg": ("psycopg", "psycopg-binary"),
    "multipart": ("python-multipart",),
    "slugify": ("python-slugify",),
    "telegram": ("python-telegram-bot",),
    "websocket": ("websocket-client",),
    "google": ("protobuf", "google-api-core", "google-cloud-storage", "googleapis-common-protos"),
    "grpc": ("grpcio",),
    "github": ("pygithub",),
    "gi": ("pygobject",),
    "win32api": ("pywin32",),
    "nacl": ("pynacl",),
    "Levenshtein": ("levenshtein", "python-levenshtein"),
    "pkg_resources": ("setuptools",),
    "_pytest": ("pytest",),
    "typing_extensions": ("typing-extensions",),
    "mpl_toolkits": ("matplotlib",),
    "sentry_sdk": ("sentry-sdk",),
    "prometheus_client": ("prometheus-client",),
    "email_validator": ("email-validator",),
    "ldap": ("python-ldap",),
    "snappy": ("python-snappy",),
    "Xlib": ("python-xlib",),
}
"""Import name -> the distributions that provide it, where the names differ."""

POPULAR: tuple[str, ...] = (
    "aiohttp", "alembic", "anthropic", "anyio", "arrow", "asgiref", "attrs", "babel",
    "bcrypt", "beautifulsoup4", "black", "boto", "boto3", "botocore", "cachetools", "celery",
    "certifi", "cffi", "charset-normalizer", "click", "colorama", "coverage", "cryptography",
    "cython", "dask", "decorator", "distlib", "django", "dnspython", "docker", "docutils",
    "email-validator", "faker", "fastapi", "filelock", "flake8", "flask", "freezegun",
    "gevent", "gitpython", "greenlet", "grpcio", "gunicorn", "h11", "httpcore", "httplib2",
    "httpx", "huggingface-hub", "hypothesis", "idna", "importlib-metadata", "iniconfig",
    "isort", "itsdangerous", "jinja2", "jmespath", "joblib", "jsonschema", "keras", "kombu",
    "kubernetes", "lightgbm", "llvmlite", "loguru", "lxml", "markdown", "markupsafe",
    "marshmallow", "matplotlib", "mock", "more-itertools", "msgpack", "mypy", "networkx",
    "nltk", "numba", "numpy", "oauthlib", "openai", "opencv-python", "openpyxl", "orjson",
    "packaging", "pandas", "paramiko", "pendulum", "pexpect", "pillow", "pip", "platformdirs",
    "plotly", "pluggy", "polars", "prometheus-client", "protobuf", "psutil", "psycopg",
    "psycopg2", "psycopg2-binary", "pyarrow", "pyasn1", "pycparser", "pydantic", "pygments",
    "pyjwt", "pylint", "pymongo", "pymysql", "pynacl", "pyopenssl", "pyparsing", "pyserial",
    "pytest", "python-dateutil", "python-dotenv", "python-multipart", "pytz", "pyyaml",
    "pyzmq", "redis", "regex", "requests", "requests-oauthlib", "responses", "rich", "rsa",
    "ruff", "s3transfer", "scikit-learn", "scipy", "scrapy", "seaborn", "selenium",
    "sentry-sdk", "setuptools", "shapely", "simplejson", "six", "sniffio", "soupsieve",
    "spacy", "sphinx", "sqlalchemy", "sqlmodel", "starlette", "statsmodels", "structlog",
    "sympy", "tabulate", "tensorflow", "termcolor", "tokenizers", "toml", "tomli", "tomlkit",
    "torch", "tornado", "tox", "tqdm", "transformers", "twisted", "typer",
    "typing-extensions", "ujson", "urllib3", "uvicorn", "virtualenv", "websocket-client",
    "websockets", "werkzeug", "wheel", "wrapt", "xgboost", "xlrd", "yarl", "zipp",
)  # fmt: skip
"""Distributions among the most downloaded from PyPI (normalized names): a new import one
or two letters away from one of these, but not it, is refused as a likely typosquat."""
