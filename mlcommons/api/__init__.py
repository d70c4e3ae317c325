"""The HTTP API: aiohttp, two dialects over one core. Handlers translate and validate; the core decides."""
