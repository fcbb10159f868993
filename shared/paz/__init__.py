"""The library every paz service is built on: settings, etcd access, discovery and the web app shape."""

__version__ = "0.1.0"
