import { MemoryDriver } from '../../functions/storage/memory.js';
import { describeStorageDriver } from './driver-suite.js';

// Each MemoryDriver has its own storage, so a second instance cannot resume the first one's writes.
describeStorageDriver(
  'inmemory',
  () => Promise.resolve({ driver: new MemoryDriver(), cleanup: () => Promise.resolve() }),
  {
    sharedAcrossInstances: false,
  },
);
