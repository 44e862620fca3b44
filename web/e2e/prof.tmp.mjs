import { startLogbook, launch, signIn } from './harness.mjs';
const lb = await startLogbook();
const alice = await lb.admin.user('alice');
await alice.project('alice', 'sweep');
const ws=[alice]; for (let i=0;i<4;i++){ws.push(await lb.admin.user('w'+i)); await alice.invite('alice','sweep','w'+i,'member');}
await Promise.all(ws.map(async (c,wi)=>{for(let i=wi;i<1000;i+=5){const r=await c.startRun('alice','sweep',{name:'s'+i,config:{lr:0.1,batch_size:32,optimizer:{name:'adam',momentum:0.9},dropout:0.1,seed:i}});await c.log('alice','sweep',r.run_id,[{step:0,values:{loss:1/(i+1),acc:i/1000}}]);}}));
await new Promise(r=>setTimeout(r,1500));
const ctx = await launch({}); const page = await ctx.newPage(); await page.setViewportSize({width:1400,height:2400});
await signIn(page, lb.url, alice.key);
for (let k=0;k<3;k++){
await page.goto(`${lb.url}/w/alice/sweep?limit=1000&cols=state,owner,job_type,group,tags,created_at,duration,config.lr,config.batch_size,config.optimizer.name,summary.loss,summary.acc`);
await page.waitForFunction(() => performance.getEntriesByName('lb:table-painted').length > 0);
console.log(await page.evaluate(()=>{const r = performance.getEntriesByType('resource').filter((e) => e.name.includes('limit=1000'))[0]; const g=(n)=>performance.getEntriesByName(n)[0]; return {resp: r.responseEnd, runsResp: g('lb:runs-response').startTime, learn: g('lb:learn').duration, build: g('lb:table-build').duration, buildEnd: g('lb:table-build').startTime+g('lb:table-build').duration, painted: g('lb:table-painted').startTime}}));
}
await ctx.close(); await lb.stop();
