"""What an HTTP answer is, once it is in: the value both `conveyor.http` and `conveyor.llm` use.

`response.Response` (status, the headers worth keeping, the body) and `redact.Redactor` (the
secrets kept out of it) import nothing above `conveyor._json`: the HTTP runner makes answers,
the LLM layer counts, checks and caches them, and neither needs the other for it.
"""
