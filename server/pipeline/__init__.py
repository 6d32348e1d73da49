"""One call as a pipeline of stages, data going one way: prepare → route → budget → answer (→ hand-off) → record.

Each stage is its own module; its input and output are plain data, and it holds only the components it uses.
`server.delegation` composes the stages for delegate, ask, panel, jobs and route_only.
"""
