"""The web layer: the aiohttp app, its middleware, the streams, the JSON and Prometheus
endpoints and the page. The only package that imports aiohttp.web."""
