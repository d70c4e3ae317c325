"""OpenAI's embeddings API, a third dialect over the same core (``POST /v1/embeddings``,
``GET /v1/models``): for code written against the OpenAI SDK, LangChain or LlamaIndex."""
