"""Talking to Ray itself.

dashboard   async client of the Ray dashboard's REST API (Jobs, Serve, health), direct or through the
            API server's service proxy
"""
