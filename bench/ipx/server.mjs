// ipx over a local folder, one Node process on one loopback port: node server.mjs ROOT PORT.
// No result cache: every request reads the original and renders it, as a sidecar miss does.
import { createServer } from "node:http";
import { createIPX, createIPXNodeServer, ipxFSStorage } from "ipx";

const [root, port] = process.argv.slice(2);
const ipx = createIPX({ storage: ipxFSStorage({ dir: root }) });
createServer(createIPXNodeServer(ipx)).listen(Number(port), "127.0.0.1");
