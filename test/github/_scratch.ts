import Bottleneck from 'bottleneck';
import { Redis } from 'ioredis';
import { spawn } from 'node:child_process';
const port = 6391;
const child = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
await new Promise((r) => setTimeout(r, 300));
try {
  const mk = () => new Bottleneck({ id: 'scratch', datastore: 'ioredis', clientOptions: { port }, maxConcurrent: 1, minTime: 100, Redis } as any);
  const l = mk();
  l.on('error', (e: any) => console.log('limiter error event', e.message));
  console.log(await l.schedule(async () => 'ok1'));
  const admin = new Redis({ port });
  console.log(await admin.keys('*'));
  await admin.flushall();
  try { console.log(await l.schedule(async () => 'ok2')); } catch (e: any) { console.log('after flush:', JSON.stringify(e.message), e.constructor.name); }
  // without Redis option
  const l2 = new Bottleneck({ id: 'scratch2', datastore: 'ioredis', clientOptions: { port } } as any);
  try { console.log(await l2.schedule(async () => 'ok3')); } catch (e: any) { console.log('no Redis opt:', e.message); }
  await l.disconnect(); await l2.disconnect().catch(()=>{}); admin.disconnect();
} finally { child.kill(); }
