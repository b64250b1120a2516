export * from "./EffectAi.js"
export * from "./OpenAiCompatible.js"
export * from "./ProviderConfig.js"
export * from "./Providers.js"
