export { promote, type PromotionContext, type PromotionOutcome, type PromotionParticipant } from './promote.js'
export { catchUpTimedOut, isBehind, lagTooHigh, possibleLoss, type CandidateLag } from './promotion-gate.js'
export { fenceMaster, promoteNativeReplica, repointReplicas, waitForHeartbeat, type FenceResult } from './promotion.js'
