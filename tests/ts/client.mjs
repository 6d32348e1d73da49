// Drive an MCP server over stdio with the official TypeScript SDK (v1) client and print one JSON report.
//
// Usage: node client.mjs '<spec>'   (or the spec as JSON on stdin)
//   spec = {"command": "/path/to/server", "args": [], "calls": [{"name": "delegate", "arguments": {...}}],
//           "cwd": "/folder/to/start/the/server/in", "roots": ["file:///project"]}   (cwd and roots optional)
// With "roots" the client declares the roots capability and answers roots/list with them, as IDE clients do.
//   An argument whose value is "$job_id" gets the job_id of the latest result that carried one.
//   A call with "retryWhile": "text" is repeated (every 0.5 s, for up to 60 s) while it errors with that text.
// The server inherits this process's environment. Bare imports resolve from this file's folder, so run a
// copy placed next to a node_modules that holds @modelcontextprotocol/sdk (npm install --prefix <dir>).
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ListRootsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const spec = JSON.parse(process.argv[2] ?? readFileSync(0, "utf8"));
const transport = new StdioClientTransport({
  command: spec.command,
  args: spec.args ?? [],
  cwd: spec.cwd,
  env: Object.fromEntries(Object.entries(process.env).filter(([, value]) => value !== undefined)),
  stderr: "inherit",
});
let protocolVersion = null;
transport.setProtocolVersion = (version) => {
  protocolVersion = version;
};
const capabilities = spec.roots ? { roots: { listChanged: true } } : {};
const client = new Client({ name: "delegate-mcp-ts-test", version: "1.0.0" }, { capabilities });
if (spec.roots) {
  client.setRequestHandler(ListRootsRequestSchema, async () => ({
    roots: spec.roots.map((uri) => ({ uri, name: uri.split("/").pop() })),
  }));
}

const report = { protocolVersion: null, server: null, tools: [], calls: [] };
try {
  await client.connect(transport);
  report.protocolVersion = protocolVersion;
  report.server = client.getServerVersion() ?? null;
  const { tools } = await client.listTools();
  report.tools = tools.map((tool) => ({ name: tool.name, hasOutputSchema: Boolean(tool.outputSchema) }));
  let jobId = null;
  for (const call of spec.calls ?? []) {
    try {
      const args = Object.fromEntries(
        Object.entries(call.arguments ?? {}).map(([key, value]) => [key, value === "$job_id" ? jobId : value]),
      );
      // callTool validates structuredContent against the tool's outputSchema and throws when it does not match.
      let result = await client.callTool({ name: call.name, arguments: args });
      for (let tries = 0; call.retryWhile && result.isError && tries < 120; tries++) {
        if (!JSON.stringify(result.content ?? []).includes(call.retryWhile)) break;
        await new Promise((resolve) => setTimeout(resolve, 500));
        result = await client.callTool({ name: call.name, arguments: args });
      }
      jobId = result.structuredContent?.job_id ?? jobId;
      const text = (result.content ?? []).find((block) => block.type === "text");
      report.calls.push({
        name: call.name,
        isError: Boolean(result.isError),
        structuredContent: result.structuredContent ?? null,
        text: text ? text.text : null,
      });
    } catch (error) {
      report.calls.push({ name: call.name, error: String(error?.message ?? error) });
    }
  }
} finally {
  await client.close();
}
process.stdout.write(JSON.stringify(report) + "\n");
