import type { Settings as SettingsShape } from "@vigil/domain"
import { defaultSettings } from "@vigil/domain"
import { Context, Layer } from "effect"

/**
 * The supervision settings in force, read once at start (the server reads them from its config
 * file, server/src/ConfigFile.ts; an embedding app passes its own).
 */
export class Settings extends Context.Tag("vigil/Settings")<Settings, SettingsShape>() {
  static readonly layer = (settings: Partial<SettingsShape> = {}) =>
    Layer.succeed(Settings, { ...defaultSettings, ...settings })
}
